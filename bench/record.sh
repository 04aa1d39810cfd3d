#!/usr/bin/env bash
# Recording cost: N streams of the 3 Mbit/s fixture recorded for S seconds by moment ([[record]]
# stream = "*"), against the same N streams recorded by what many users run today, one
#   ffmpeg -i rtmp://.../live/sK -c copy -f segment -segment_format mp4 ...
# per stream (reading from moment as players). Same machine, same run, three phases:
#   1. baseline: moment with the N publishers only;
#   2. moment records: the same, with [[record]] stream = "*";
#   3. ffmpeg records: the baseline plus N ffmpeg segmenters.
# Reported: CPU per recorded stream-second (moment: phase 2 less phase 1; ffmpeg: the
# segmenters' own CPU, and with what moment spends serving them as players), their ratio, RSS
# added per recording stream, bytes written over payload bytes (container overhead, payload =
# the packets ffprobe reads back), and the playback API's time to first byte for a 1-hour range
# (60 copies of a recorded minute, indexed at start; first request plans it, later ones reuse
# the plan).
#
# Usage: bench/record.sh [--streams 20] [--seconds 60] [--fixture fixtures/h264-main-3mbps-aac.mp4]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
N=20; SECS=60; FIX="$ROOT/fixtures/h264-main-3mbps-aac.mp4"; WARM=5
while [ $# -gt 0 ]; do
  case "$1" in
    --streams) N="$2"; shift ;;
    --seconds) SECS="$2"; shift ;;
    --fixture) FIX="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v ffmpeg >/dev/null && command -v curl >/dev/null || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq ffmpeg curl; }
(cd "$ROOT" && cargo build --release --quiet --bin moment)
BIN="$ROOT/target/release/moment"
WORK=$(mktemp -d /tmp/moment-record.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done; sleep 0.5
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done; PIDS=(); }
trap 'cleanup; rm -rf "$WORK"' EXIT
# utime + stime of the given pids, in clock ticks (the pids alive now).
ticks() { python3 - "$@" <<'PY'
import sys
t = 0
for p in sys.argv[1:]:
    if not p.isdigit():
        continue
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        t += int(f[11]) + int(f[12])
    except OSError:
        pass
print(t)
PY
}
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

# Starts moment with config $1 (a file); sets SRV, RTMP.
start_moment() {
  "$BIN" --config "$1" 2>"$WORK/moment.log" &
  SRV=$!; PIDS+=("$SRV")
  for _ in $(seq 100); do grep -q "RTMP listening" "$WORK/moment.log" 2>/dev/null && break; sleep 0.1; done
}
publishers() {
  for i in $(seq 1 "$N"); do
    ffmpeg -hide_banner -nostdin -loglevel error -re -stream_loop -1 -i "$FIX" -c copy -f flv \
      "rtmp://127.0.0.1:$RTMP/live/s$i" 2>/dev/null &
    PIDS+=("$!")
  done
}
# One phase: $1 name, $2 record section (or empty), $3 "ffmpeg" to add segmenters.
phase() {
  RTMP=$(port)
  printf '[rtmp]\nlisten = "127.0.0.1:%s"\n[http]\nenabled = false\n%s\n' "$RTMP" "$2" >"$WORK/$1.toml"
  start_moment "$WORK/$1.toml"
  publishers
  SEG=()
  if [ "${3:-}" = ffmpeg ]; then
    mkdir -p "$WORK/ffmpeg"
    sleep 1
    for i in $(seq 1 "$N"); do
      ffmpeg -hide_banner -nostdin -loglevel error -i "rtmp://127.0.0.1:$RTMP/live/s$i" -c copy \
        -f segment -segment_format mp4 -segment_time 600 -reset_timestamps 1 \
        "$WORK/ffmpeg/s$i-%03d.mp4" 2>/dev/null &
      SEG+=("$!"); PIDS+=("$!")
    done
  fi
  sleep "$WARM"
  local m0 f0 m1 f1
  m0=$(ticks "$SRV"); f0=$(ticks "${SEG[@]:-}")
  sleep "$SECS"
  m1=$(ticks "$SRV"); f1=$(ticks "${SEG[@]:-}")
  eval "${1}_moment_cpu=\$(( m1 - m0 ))"
  eval "${1}_ffmpeg_cpu=\$(( f1 - f0 ))"
  eval "${1}_rss=\$(rss_kib $SRV)"
  if [ "${3:-}" = ffmpeg ]; then
    local rss=0; for p in "${SEG[@]}"; do rss=$((rss + $(rss_kib "$p"))); done
    eval "${1}_ffmpeg_rss=$rss"
  fi
  cleanup
}

echo "==> $N streams of $(basename "$FIX"), ${SECS} s windows after ${WARM} s warm-up"
phase base ""
phase moment "[[record]]
stream = \"*\"
path = \"$WORK/rec\"
segment_s = 600"
phase ffmpeg "" ffmpeg

per_stream_s() { python3 -c "print(f'{$1 / $HZ * 1000 / ($N * $SECS):.3f}')"; }
m_cost=$((moment_moment_cpu - base_moment_cpu))
f_serve=$((ffmpeg_moment_cpu - base_moment_cpu))
echo "CPU ms per recorded stream-second:"
echo "  moment recording (phase 2 - phase 1):            $(per_stream_s $m_cost)"
echo "  ffmpeg segmenters alone:                         $(per_stream_s $ffmpeg_ffmpeg_cpu)"
echo "  ffmpeg segmenters + moment serving them:         $(per_stream_s $((ffmpeg_ffmpeg_cpu + f_serve)))"
python3 -c "print(f'  ratio moment / ffmpeg: {$m_cost / max($ffmpeg_ffmpeg_cpu,1):.2f} (with serving: {$m_cost / max($ffmpeg_ffmpeg_cpu + $f_serve,1):.2f})')"
echo "RSS: baseline $base_rss KiB, recording $moment_rss KiB: $(( (moment_rss - base_rss) / N )) KiB added per recording stream;"
echo "     ffmpeg segmenters $((ffmpeg_ffmpeg_rss / N)) KiB each"
python3 - "$WORK/rec" <<'PY'
import os, subprocess, sys
files = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs if f.endswith(".mp4")]
disk = sum(os.path.getsize(f) for f in files)
payload = 0
for f in files:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=size", "-of", "csv=p=0", f],
                         capture_output=True, text=True).stdout
    payload += sum(int(l.strip().rstrip(",")) for l in out.splitlines() if l.strip())
print(f"bytes written / payload bytes: {disk / payload:.4f} ({disk} / {payload}, {len(files)} files)")
PY

# A 1-hour index: 60 copies of one recorded minute.
ONE=$(find "$WORK/rec" -name '*.mp4' | sort | head -1)
mkdir -p "$WORK/hour/hour"
python3 - "$ONE" "$WORK/hour/hour" <<'PY'
import datetime, os, shutil, subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
d = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", src],
                         capture_output=True, text=True).stdout)
t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
k, at = 0, 0.0
while at < 3600:
    t = t0 + datetime.timedelta(seconds=at)
    name = t.strftime("%Y-%m-%dT%H-%M-%S.") + f"{t.microsecond // 1000:03d}Z.mp4"
    shutil.copyfile(src, os.path.join(dst, name))
    k += 1
    at += d
print(f"1-hour index: {k} segments of {d:.1f} s")
PY
HTTP=$(port); RTMP=$(port)
printf '[rtmp]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\n[[record]]\nstream = "hour"\npath = "%s"\nkeep_s = 0\n' \
  "$RTMP" "$HTTP" "$WORK/hour" >"$WORK/hour.toml"
start_moment "$WORK/hour.toml"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$HTTP/recordings/hour.mp4?start=2026-01-01T00:00:00Z&duration=3600"
for what in "first (plans)" "second (cached plan)" "third (cached plan)"; do
  curl -s -o /dev/null -r 0-1048575 -w "TTFB 1-hour range, $what: %{time_starttransfer} s\n" "$URL"
done
curl -s -o /dev/null -w "whole 1-hour file: %{size_download} bytes in %{time_total} s\n" "$URL"
echo "moment RSS with the 1-hour plan cached: $(rss_kib "$SRV") KiB"
cleanup
