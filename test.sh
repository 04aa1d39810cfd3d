#!/usr/bin/env bash
# The test command: installs what the tests need (Debian packages, only those missing) and runs
# every check: formatting, clippy, the unit and black-box test suites, the loom models of the
# page allocator, and the allocator's tests under AddressSanitizer.
#
# Usage: ./test.sh            (as root, or with sudo available for apt-get)
#        SKIP_ASAN=1 ./test.sh   (skip the AddressSanitizer pass, e.g. without a nightly toolchain)
set -euo pipefail
cd "$(dirname "$0")"

# Real peers the tests talk to: ffmpeg/ffprobe and rtmpdump as publishers and players, nasm for
# openh264's SIMD code, libclang for bindgen, GStreamer's RTSP server (python3-gi) as a camera,
# GStreamer's gst-launch-1.0 (gstreamer1.0-tools) as a second MP4 reader of recordings,
# Chromium (headless, driven by tests/chromium_check.py) for the web pages and hls.js,
# VLC's RTSP server (vlc-bin, vlc-plugin-base) as a second, independent camera implementation,
# nginx with the RTMP module as the server the benchmarks compare against.
PACKAGES=(
  ffmpeg rtmpdump nasm libclang-dev
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  nginx libnginx-mod-rtmp chromium vlc-bin vlc-plugin-base
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test (unit, property and black-box tests)"
cargo test --workspace --release
echo "==> loom models of the page allocator's atomics"
RUSTFLAGS="--cfg moment_loom" CARGO_TARGET_DIR=target/loom \
  cargo test --release --lib pages::loom_model
if [ -z "${SKIP_ASAN:-}" ]; then
  echo "==> page allocator and RTMP core tests under AddressSanitizer (nightly)"
  RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan \
    cargo +nightly test --target x86_64-unknown-linux-gnu --lib -- pages rtmp
fi
echo "==> all checks passed"
