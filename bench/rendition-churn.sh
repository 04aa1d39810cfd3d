#!/usr/bin/env bash
# Rendition start/stop soak (issue #6): N times, a player opens a rendition of a 720p source
# (the rendition starts: subscription, codec thread, openh264 decoder and encoder), reads until
# it has video, and leaves; the script waits for the server's "codec thread ended" line before
# the next cycle, so every cycle is a full start and stop. Each cycle samples the server's RSS
# and thread count after the stop. Prints a CSV line per cycle, then RSS growth over the run
# and after a warm-up of N/4 cycles, and the thread counts seen.
# Target: RSS growth <= 2 MB over 200 cycles, threads flat.
#
# Usage: bench/rendition-churn.sh [N=200] [fixture=fixtures/h264-main-3mbps-aac.mp4]
set -euo pipefail
N="${1:-200}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FIXTURE="${2:-$ROOT/fixtures/h264-main-3mbps-aac.mp4}"
BIN="$ROOT/target/release/moment"
(cd "$ROOT" && cargo build --quiet --release --bin moment)
command -v ffprobe >/dev/null || { echo "ffprobe missing: apt-get install ffmpeg" >&2; exit 1; }
DIR="$(mktemp -d /tmp/rendition-churn.XXXXXX)"
SRVPID=""
cleanup() { [ -n "$SRVPID" ] && kill -9 "$SRVPID" 2>/dev/null || true; }
trap cleanup EXIT

cat >"$DIR/moment.toml" <<TOML
[rtmp]
listen = "127.0.0.1:0"
[http]
enabled = false
[[file]]
name = "cam"
path = "$FIXTURE"
[[rendition]]
source = "cam"
name = "cam_360p"
height = 360
bitrate_kbps = 600
keyframe_interval_s = 2
linger_s = 0
TOML
RUST_LOG=info "$BIN" --config "$DIR/moment.toml" 2>"$DIR/server.log" &
SRVPID=$!
for _ in $(seq 200); do grep -q "RTMP listening" "$DIR/server.log" && break; sleep 0.05; done
ADDR="$(grep -o 'RTMP listening addr=[0-9.:]*' "$DIR/server.log" | head -1 | cut -d= -f2)"
[ -n "$ADDR" ] || { echo "server did not start; log in $DIR/server.log" >&2; exit 1; }
URL="rtmp://$ADDR/live/cam_360p"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$SRVPID/status"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$SRVPID/status"; }
stops() { grep -c "codec thread ended" "$DIR/server.log" || true; }

{
echo "cycle,rss_kb,threads,start_ms"
for i in $(seq 1 "$N"); do
  before="$(stops)"
  t0="$(date +%s%N)"
  # ffprobe reads until it knows the streams: the rendition has delivered a keyframe.
  if ! timeout 30 ffprobe -v error -show_entries stream=width,height -of csv=p=0 "$URL" >"$DIR/probe.txt" 2>>"$DIR/probe.err"; then
    echo "cycle $i: ffprobe failed; see $DIR/probe.err" >&2
  fi
  t1="$(date +%s%N)"
  for _ in $(seq 400); do [ "$(stops)" -gt "$before" ] && break; sleep 0.025; done
  [ "$(stops)" -gt "$before" ] || { echo "cycle $i: the rendition did not stop; log in $DIR/server.log" >&2; exit 1; }
  # Let the joined thread's stack and the freed codec memory settle before sampling.
  sleep 0.1
  echo "$i,$(rss),$(threads),$(( (t1 - t0) / 1000000 ))"
done
} | tee "$DIR/cycles.csv"

python3 - "$DIR/cycles.csv" "$N" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
n = int(sys.argv[2])
rss = [int(r["rss_kb"]) for r in rows]
th = [int(r["threads"]) for r in rows]
ms = sorted(int(r["start_ms"]) for r in rows)
warm = max(1, n // 4)
print(f"cycles: {len(rows)}")
print(f"RSS KB: first {rss[0]}, after warm-up (cycle {warm}) {rss[warm-1]}, last {rss[-1]}, max {max(rss)}")
print(f"RSS growth: {rss[-1]-rss[0]} KB over the run, {rss[-1]-rss[warm-1]} KB after warm-up")
print(f"threads after each stop: min {min(th)}, max {max(th)}")
print(f"player start to stream info (ffprobe's own probing included): median {ms[len(ms)//2]} ms, max {ms[-1]} ms")
tail = rss[warm-1:]
xs = range(len(tail))
mx, my = sum(xs) / len(tail), sum(tail) / len(tail)
slope = sum((x - mx) * (y - my) for x, y in zip(xs, tail)) / max(1, sum((x - mx) ** 2 for x in xs))
print(f"RSS slope after warm-up: {slope:+.2f} KB/cycle")
PY
# The rendition's own start: a player arriving -> its first encoded keyframe, from the log.
python3 - "$DIR/server.log" <<'PY'
import re, sys
from datetime import datetime
def t(line):
    return datetime.strptime(line[:26], "%Y-%m-%dT%H:%M:%S.%f")
arrive, first = [], []
for line in open(sys.argv[1]):
    if "a player arrived: rendition starting" in line: arrive.append(t(line))
    elif "rendition's first keyframe" in line: first.append(t(line))
d = sorted((b - a).total_seconds() * 1000 for a, b in zip(arrive, first))
if d:
    print(f"rendition start (player arrives -> first keyframe out): median {d[len(d)//2]:.0f} ms, max {d[-1]:.0f} ms, n={len(d)}")
PY
echo "files: $DIR"
