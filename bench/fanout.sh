#!/usr/bin/env bash
# Fan-out benchmark: moment against nginx-rtmp, same publisher, same players, same run.
#
# Usage: bench/fanout.sh [--quick] [--seconds S] [--players "100 300 1000"]
#                        [--fixtures "fixtures/a.mp4 ..."] [--servers "moment nginx"] [--out DIR]
#   default: both fixtures (h264-baseline-aac.mp4 ~300 kbit/s, h264-main-3mbps-aac.mp4
#   ~3 Mbit/s) x N = 100, 300, 1000 x both servers, 20 s windows (about 7 minutes).
#   --quick: N = 100 only, 10 s windows (about 1 minute).
#
# For each (fixture, N) it runs moment, then nginx (the order alternates from one pair to the
# next), each from a fresh start on a free 127.0.0.1 port:
#   publisher: ffmpeg -re -stream_loop -1 -i FIXTURE -c copy -f flv rtmp://127.0.0.1:PORT/live/bench
#   players:   target/release/moment-bench -n N (one process, reads and discards), which also
#              measures the server's process tree from /proc (CPU, RSS idle/end/peak).
# moment runs in release with the default config except [rtmp] listen, [http] enabled = false and
# no [[file]] demo; nginx with bench/nginx-rtmp.conf (one worker, its own prefix under /tmp).
# Results: one JSON line per run in DIR/results.jsonl (default /tmp/moment-fanout-DATE), then a
# table with the moment/nginx ratios. Every process started here is stopped by its PID.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SECS=20
PLAYERS="100 300 1000"
FIXTURES="$ROOT/fixtures/h264-baseline-aac.mp4 $ROOT/fixtures/h264-main-3mbps-aac.mp4"
SERVERS="moment nginx"
OUT="/tmp/moment-fanout-$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SECS=10; PLAYERS="100" ;;
    --seconds) SECS="$2"; shift ;;
    --players) PLAYERS="$2"; shift ;;
    --fixtures) FIXTURES="$2"; shift ;;
    --servers) SERVERS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

need() { command -v "$1" >/dev/null 2>&1; }
if ! need ffmpeg || ! need nginx || [ ! -e /usr/share/nginx/modules/ngx_rtmp_module.so ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg nginx libnginx-mod-rtmp python3
fi
# Debian starts the packaged nginx on install; we run our own, so make sure that one is not in
# the way (it listens on :80 only, which we never use, so leaving it running is harmless).

# One fd per player in the client and in the server, plus slack.
MAXN=$(echo "$PLAYERS" | tr ' ' '\n' | sort -n | tail -1)
WANT=$((2 * MAXN + 1024))
[ "$(ulimit -n)" -ge "$WANT" ] || ulimit -n "$WANT" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge "$((MAXN + 100))" ] || { echo "ulimit -n $(ulimit -n) is too low for $MAXN players" >&2; exit 1; }

(cd "$ROOT" && cargo build --release --quiet --bin moment --bin moment-bench)
MOMENT="$ROOT/target/release/moment"
BENCH="$ROOT/target/release/moment-bench"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

SRV_PID=""; PUB_PID=""; PREFIX=""
stop_pid() {  # TERM, wait up to 5 s, then KILL
  local p="$1"; [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() { stop_pid "$PUB_PID"; PUB_PID=""; stop_pid "$SRV_PID"; SRV_PID=""; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { ss -ltnH "sport = :$1" | grep -q .; }

start_server() {  # $1 = moment|nginx, $2 = port, $3 = run dir
  local dir="$3"
  case "$1" in
    moment)
      printf '[rtmp]\nlisten = "127.0.0.1:%s"\n[http]\nenabled = false\n' "$2" >"$dir/moment.toml"
      "$MOMENT" --config "$dir/moment.toml" >"$dir/server.log" 2>&1 </dev/null &
      SRV_PID=$! ;;
    nginx)
      mkdir -p "$dir/nginx/logs"
      sed -e "s|@PREFIX@|$dir/nginx|g" -e "s|@PORT@|$2|g" "$HERE/nginx-rtmp.conf" >"$dir/nginx/nginx.conf"
      nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" \
        >"$dir/server.log" 2>&1 </dev/null &
      SRV_PID=$! ;;
  esac
  for _ in $(seq 100); do listening "$2" && return 0; sleep 0.1; done
  echo "$1 did not listen on $2:"; cat "$dir/server.log" "$dir"/nginx/error.log 2>/dev/null; return 1
}

run_one() {  # $1 = server, $2 = fixture, $3 = N
  local server="$1" fix="$2" n="$3" port dir load
  port=$(free_port)
  dir="$OUT/$server-$(basename "$fix" .mp4)-$n"
  mkdir -p "$dir"
  start_server "$server" "$port" "$dir"
  ffmpeg -hide_banner -nostats -loglevel error -re -stream_loop -1 -i "$fix" -c copy -f flv \
    "rtmp://127.0.0.1:$port/live/bench" >"$dir/publisher.log" 2>&1 </dev/null &
  PUB_PID=$!
  sleep 4  # publisher connected, a GOP (2 s) cached; then the idle RSS is sampled
  kill -0 "$PUB_PID" 2>/dev/null || { echo "publisher died:"; cat "$dir/publisher.log"; return 1; }
  load=$(cut -d' ' -f1 /proc/loadavg)
  "$BENCH" --url "rtmp://127.0.0.1:$port/live/bench" -n "$n" --duration "$SECS" \
    --server-pid "$SRV_PID" --label "$server" >"$dir/bench.txt" 2>&1 || true
  local pub_alive=true; kill -0 "$PUB_PID" 2>/dev/null || pub_alive=false
  cleanup
  grep -v '^RESULT ' "$dir/bench.txt" | sed "s/^/  /"
  local line; line=$(grep '^RESULT ' "$dir/bench.txt" | sed 's/^RESULT //') || { echo "no result"; return 1; }
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(server=sys.argv[2], fixture=sys.argv[3], load1=float(sys.argv[4]), publisher_alive=sys.argv[5]=="true"); print(json.dumps(r))' \
    "$line" "$server" "$(basename "$fix")" "$load" "$pub_alive" >>"$RESULTS"
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; $(date -u '+%F %T UTC'); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "window ${SECS} s; players: $PLAYERS; results in $RESULTS"
flip=0
for fix in $FIXTURES; do
  for n in $PLAYERS; do
    order="$SERVERS"
    [ $flip -eq 1 ] && order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
    flip=$((1 - flip))
    for server in $order; do
      echo "== $server $(basename "$fix") N=$n (load $(cut -d' ' -f1 /proc/loadavg))"
      run_one "$server" "$fix" "$n"
    done
  done
done
python3 "$HERE/table.py" "$RESULTS"
