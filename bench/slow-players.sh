#!/usr/bin/env bash
# Slow players: 100 players on moment, 20 of which stop reading 3 s after they connect (their
# sockets stay open). Checks that the server's total RSS stays within the configured per-player
# bounds and that the 80 others still receive everything (no stall, no lost frames, not behind).
#
# Usage: bench/slow-players.sh [--players 100] [--stall-fraction 0.2] [--seconds 40]
#                              [--fixture fixtures/h264-main-3mbps-aac.mp4]
# moment runs in release with the default config except [rtmp] listen, [http] enabled = false
# and no [[file]] demo. A stalled player's memory is bounded by its hub queue ([hub.player]
# hard_bytes, default 8 MiB) plus its session output (256 KiB, OUTPUT_HIGH in
# src/rtmp/server.rs); the 64 KiB below is slack (the read buffer, once per connection, is now
# one per worker thread). Payloads are shared pages, so in practice stalled players pin the
# same pages and cost far less. Bound checked on the peak RSS:
#   idle RSS + stalled x (hard_bytes + 256 KiB + 64 KiB) + players x 256 KiB (connection state)
# The script exits 1 if the bound or the 80 players' delivery fails.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
N=100; FRACTION=0.2; SECS=40; FIX="$ROOT/fixtures/h264-main-3mbps-aac.mp4"
while [ $# -gt 0 ]; do
  case "$1" in
    --players) N="$2"; shift ;;
    --stall-fraction) FRACTION="$2"; shift ;;
    --seconds) SECS="$2"; shift ;;
    --fixture) FIX="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v ffmpeg >/dev/null || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq ffmpeg; }
WANT=$((2 * N + 1024)); [ "$(ulimit -n)" -ge "$WANT" ] || ulimit -n "$WANT" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(cd "$ROOT" && cargo build --release --quiet --bin moment --bin moment-bench)
WORK=$(mktemp -d /tmp/moment-slow.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '[rtmp]\nlisten = "127.0.0.1:%s"\n[http]\nenabled = false\n' "$PORT" >"$WORK/moment.toml"
HARD=$("$ROOT/target/release/moment" --print-config | awk -F' *= *' '/^hard_bytes/{print $2}')
SRV_PID=""; PUB_PID=""; MON_PID=""
stop_pid() { local p="$1"; [ -n "$p" ] || return 0; kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }
cleanup() { stop_pid "$MON_PID"; stop_pid "$PUB_PID"; stop_pid "$SRV_PID"; }
trap cleanup EXIT INT TERM

"$ROOT/target/release/moment" --config "$WORK/moment.toml" >"$WORK/server.log" 2>&1 </dev/null &
SRV_PID=$!
for _ in $(seq 100); do ss -ltnH "sport = :$PORT" | grep -q . && break; sleep 0.1; done
ffmpeg -hide_banner -nostats -loglevel error -re -stream_loop -1 -i "$FIX" -c copy -f flv \
  "rtmp://127.0.0.1:$PORT/live/bench" >"$WORK/publisher.log" 2>&1 </dev/null &
PUB_PID=$!
sleep 4
IDLE_KB=$(awk '/^VmRSS/{print $2}' "/proc/$SRV_PID/status")
( t=0; while sleep 5; do t=$((t + 5)); echo "t=${t}s rss=$(awk '/^VmRSS/{printf "%.1f MB", $2/1024}' "/proc/$SRV_PID/status")"; done ) &
MON_PID=$!
echo "moment, $N players, $(awk -v f="$FRACTION" -v n="$N" 'BEGIN{printf "%d", n*f+0.5}') stop reading after 3 s; $(basename "$FIX"); ${SECS} s; idle RSS $((IDLE_KB / 1024)) MB; hard_bytes $HARD; load $(cut -d' ' -f1 /proc/loadavg)"
"$ROOT/target/release/moment-bench" --url "rtmp://127.0.0.1:$PORT/live/bench" -n "$N" --duration "$SECS" \
  --stall-fraction "$FRACTION" --stall-after 3 --server-pid "$SRV_PID" --label moment-slow | tee "$WORK/bench.txt"
stop_pid "$MON_PID"; MON_PID=""
RESULT=$(grep '^RESULT ' "$WORK/bench.txt" | sed 's/^RESULT //')
KICKED=$(grep -c 'player disconnected\|peer stopped reading' "$WORK/server.log" || true)
python3 - "$RESULT" "$IDLE_KB" "$HARD" "$KICKED" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); idle_kb = int(sys.argv[2]); hard = int(sys.argv[3]); kicked = sys.argv[4]
stalled, n = r["stalled_by_design"], r["players"]
bound_kb = idle_kb + stalled * (hard + (256 + 64) * 1024) / 1024 + n * 256
peak = r["server_rss_peak_kb"]
ok_mem = peak <= bound_kb
ok_players = r["complete"] == r["active"]
print(f"peak RSS {peak / 1024:.1f} MB, end {r['server_rss_end_kb'] / 1024:.1f} MB, bound {bound_kb / 1024:.1f} MB: {'OK' if ok_mem else 'OVER'}")
print(f"reading players complete {r['complete']}/{r['active']}: {'OK' if ok_players else 'FAILED'}; "
      f"stalled players disconnected by the server: {kicked}")
sys.exit(0 if ok_mem and ok_players else 1)
PY
