#!/usr/bin/env bash
# Remakes the committed mp4_file_source seeds with Debian 12's ffmpeg 5.1 (lavfi testsrc video,
# 1 kHz sine). Tiny on purpose: libFuzzer's -max_len follows the largest seed, and every
# execution parses the whole file. SEI (x264's option string) and metadata are stripped.
# Usage: bash fuzz/seeds/make-seeds.sh
set -euo pipefail
D="$(cd "$(dirname "$0")" && pwd)/mp4_file_source"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
FF="ffmpeg -hide_banner -loglevel error -y"
STRIP="-map_metadata -1 -fflags +bitexact"
# H.264 high with B-frames (composition offsets) + AAC-LC 8 kHz mono, 3 frames of video.
$FF -f lavfi -i testsrc=size=32x32:rate=5:duration=0.6 \
    -f lavfi -i sine=frequency=1000:sample_rate=8000:duration=0.6 \
    -c:v libx264 -profile:v high -bf 1 -g 2 -pix_fmt yuv420p -c:a aac -b:a 16k -ac 1 "$T/a.mp4"
$FF -i "$T/a.mp4" -c copy -bsf:v filter_units=remove_types=6 $STRIP "$D/tiny-high-aac.mp4"
# H.264 baseline, video only, 2 frames.
$FF -f lavfi -i testsrc=size=16x16:rate=5:duration=0.4 \
    -c:v libx264 -profile:v baseline -g 2 -pix_fmt yuv420p "$T/b.mp4"
$FF -i "$T/b.mp4" -c copy -bsf:v filter_units=remove_types=6 $STRIP \
    "$D/tiny-baseline-noaudio.mp4"
# AAC only.
$FF -f lavfi -i sine=frequency=1000:sample_rate=8000:duration=0.3 -c:a aac -b:a 8k -ac 1 \
    "$T/c.mp4"
$FF -i "$T/c.mp4" -c copy $STRIP "$D/tiny-aac-only.mp4"
