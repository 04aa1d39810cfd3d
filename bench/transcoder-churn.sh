#!/usr/bin/env bash
# Soak for the audio codecs (issue #5): creates, feeds (25 packets = 0.5 s), finishes and drops
# Speex and G.711 -> AAC transcoders CYCLES times each, printing VmRSS before and after.
# Target: growth ~0 (the churn test in codecs/tests/churn.rs asserts <= 1 MiB per 1000).
# Usage: bench/transcoder-churn.sh [cycles=10000] [packets per transcoder=25]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p codecs --example transcoder_churn -- "${1:-10000}" "${2:-25}"
