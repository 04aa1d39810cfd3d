#!/usr/bin/env bash
# RTSP ingest, two measurements (same machine, same run, 127.0.0.1 only):
#
#   soak: one moment with two UDP cameras at once, one on gst-rtsp-server (tests/rtsp_camera.py,
#         /cam) and one on VLC's RTSP server (fed the same fixture, looped, by ffmpeg), for
#         --minutes. Reported per camera: reconnects (target 0), frames received / frames sent
#         (target >= 99.9 %; sent = the fixture's frame rate x the time), RTP loss, receiver
#         reports; and moment's RSS slope over the run (KiB per minute, least squares over a
#         sample every 30 s).
#   cost: --cameras cameras (one gst-rtsp-server, that many sessions of /cam) pulled over TCP
#         for --seconds, first by moment ([[camera]] x N), then by what an nginx-rtmp user runs
#         today: N x `ffmpeg -rtsp_transport tcp -i rtsp://... -c copy -f flv rtmp://nginx/...`
#         into nginx-rtmp (bench/nginx-rtmp.conf). Reported: CPU ms per camera-second and RSS
#         per camera for each (ffmpeg processes + nginx together), and the moment / ffmpeg ratios.
#
# Usage: bench/rtsp-ingest.sh soak [--minutes 30]
#        bench/rtsp-ingest.sh cost [--cameras 20] [--seconds 60]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
MODE="${1:-}"; shift || true
MINUTES=30; CAMS=20; SECS=60; WARM=10
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift ;;
    --cameras) CAMS="$2"; shift ;;
    --seconds) SECS="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$MODE" in soak|cost) ;; *) sed -n '2,19p' "$0"; exit 2 ;; esac

need() { command -v "$1" >/dev/null 2>&1; }
if ! need ffmpeg || ! need cvlc || ! need nginx || ! need curl || \
   [ ! -e /usr/share/nginx/modules/ngx_rtmp_module.so ] || ! /usr/bin/python3 -c 'import gi' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends ffmpeg curl \
    vlc-bin vlc-plugin-base nginx libnginx-mod-rtmp python3-gi gir1.2-gst-rtsp-server-1.0 \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
fi
(cd "$ROOT" && cargo build --release --quiet --bin moment)
BIN="$ROOT/target/release/moment"
FIX="$ROOT/fixtures/h264-baseline-aac.mp4"
WORK=$(mktemp -d /tmp/moment-rtsp-ingest.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GROUPS_=()
cleanup() {
  for g in "${GROUPS_[@]:-}"; do [ -n "$g" ] && kill -TERM -- "-$g" 2>/dev/null || true; done; sleep 0.5
  for g in "${GROUPS_[@]:-}"; do [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null || true; done; GROUPS_=()
}
trap 'cleanup; rm -rf "$WORK"' EXIT
# Runs "$@" in its own process group (so the whole pipeline can be stopped); sets LAST.
spawn() { setsid "$@" </dev/null & LAST=$!; GROUPS_+=("$LAST"); }
listening() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1" >&2; return 1; }
# utime + stime, in clock ticks, of the given pids and all their descendants.
ticks() { python3 - "$@" <<'PY'
import os, sys
want = {int(p) for p in sys.argv[1:] if p.isdigit()}
kids = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            st = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            kids.setdefault(int(st[1]), []).append((int(d), int(st[11]) + int(st[12])))
        except OSError:
            pass
total, todo = 0, list(want)
own = {}
for ps in kids.values():
    for pid, t in ps:
        own[pid] = t
while todo:
    p = todo.pop()
    total += own.get(p, 0)
    todo.extend(c for c, _ in kids.get(p, []))
print(total)
PY
}
# RSS (KiB) of the given pids and all their descendants.
rss_tree() { python3 - "$@" <<'PY'
import os, sys
parent = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError:
            pass
roots = {int(p) for p in sys.argv[1:] if p.isdigit()}
def under(p):
    while p > 1:
        if p in roots:
            return True
        p = parent.get(p, 0)
    return False
total = 0
for p in parent:
    if under(p):
        try:
            for l in open(f"/proc/{p}/status"):
                if l.startswith("VmRSS:"):
                    total += int(l.split()[1])
        except OSError:
            pass
print(total)
PY
}
HZ=$(getconf CLK_TCK)

gst_camera() {  # $1 port
  spawn /usr/bin/python3 "$ROOT/tests/rtsp_camera.py" "$1" "$ROOT/fixtures" >"$WORK/gst-$1.log" 2>&1
  listening "$1"
}

if [ "$MODE" = soak ]; then
  GST=$(port); VLC=$(port); HTTP=$(port); RTMP=$(port)
  gst_camera "$GST"
  spawn sh -c "ffmpeg -nostdin -v error -re -stream_loop -1 -i '$FIX' -c copy -f mpegts - | \
    runuser -u nobody -- cvlc -I dummy -q - --sout '#rtp{sdp=rtsp://127.0.0.1:$VLC/cam}' --sout-keep" \
    >"$WORK/vlc.log" 2>&1
  listening "$VLC"
  # VLC's SDP lists each track once its input has produced it: wait for both, or a session
  # opened too early would be video only for its whole life.
  python3 - "$VLC" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
for _ in range(100):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"DESCRIBE rtsp://127.0.0.1:{port}/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
    time.sleep(0.3)
    reply = s.recv(65536).decode(errors="replace")
    s.close()
    if "m=video" in reply and "m=audio" in reply:
        sys.exit(0)
sys.exit("VLC never described both tracks")
PY
  cat >"$WORK/moment.toml" <<EOF
[rtmp]
listen = "127.0.0.1:$RTMP"
[http]
listen = "127.0.0.1:$HTTP"
[[camera]]
name = "gst"
url = "rtsp://127.0.0.1:$GST/cam"
transport = "udp"
[[camera]]
name = "vlc"
url = "rtsp://127.0.0.1:$VLC/cam"
transport = "udp"
EOF
  spawn "$BIN" --config "$WORK/moment.toml" 2>"$WORK/moment.log"
  MOMENT=$LAST
  listening "$HTTP"
  echo "==> UDP soak, ${MINUTES} min: gst-rtsp-server and VLC, $(basename "$FIX") looped"
  sleep "$WARM"
  python3 - "$HTTP" "$MOMENT" "$MINUTES" "$FIX" <<'PY'
import json, subprocess, sys, time, urllib.request
http, pid, minutes, fix = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def count(sel):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", sel, "-count_packets",
                          "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", fix],
                         capture_output=True, text=True).stdout
    return int(out.strip().rstrip(","))
dur = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                            "csv=p=0", fix], capture_output=True, text=True).stdout)
rate = (count("v") + count("a")) / dur
# The machine's proxy settings must not apply to 127.0.0.1.
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def sample():
    s = json.load(direct.open(f"http://127.0.0.1:{http}/api/streams"))["streams"]
    rss = int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")))
    return time.monotonic(), {x["name"]: x for x in s}, rss
t0, s0, _ = sample()
rss = []
end = t0 + minutes * 60
while True:
    t, s, r = sample()
    rss.append(((t - t0) / 60, r))
    if t >= end:
        break
    time.sleep(min(30, max(0.1, end - t)))
span = t - t0
print(f"frames sent per camera: {rate:.3f}/s x {span:.0f} s = {rate * span:.0f} (video + audio)")
for name in ("gst", "vlc"):
    a, b = s0[name], s[name]
    got = b["frames_in"] - a["frames_in"]
    cam = b["camera"]
    rtp = cam["rtp"]
    print(f"{name}: reconnects {cam['reconnects'] - a['camera']['reconnects']}, "
          f"frames received / sent {100 * got / (rate * span):.3f} % ({got}), "
          f"RTP received {rtp['received']}, lost {rtp['lost']}, reordered {rtp['reordered']}, "
          f"late {rtp['late']}, receiver reports {rtp['receiver_reports']}, "
          f"transport {cam['transport']}")
n = len(rss)
mx = sum(x for x, _ in rss) / n; my = sum(y for _, y in rss) / n
slope = sum((x - mx) * (y - my) for x, y in rss) / max(1e-9, sum((x - mx) ** 2 for x, _ in rss))
print(f"moment RSS: {rss[0][1]} KiB at start, {rss[-1][1]} KiB at end, "
      f"slope {slope:+.2f} KiB/min over {n} samples")
PY
  exit 0
fi

# cost
GST=$(port)
gst_camera "$GST"
window() {  # $@ pids; prints CPU ticks over SECS after WARM, then RSS
  sleep "$WARM"
  local a b
  a=$(ticks "$@"); sleep "$SECS"; b=$(ticks "$@")
  echo "$((b - a)) $(rss_tree "$@")"
}
echo "==> $CAMS cameras (gst-rtsp-server /cam, $(basename "$FIX")) over TCP, ${SECS} s after ${WARM} s"
RTMP=$(port)
{ printf '[rtmp]\nlisten = "127.0.0.1:%s"\n[http]\nenabled = false\n' "$RTMP"
  for i in $(seq 1 "$CAMS"); do
    printf '[[camera]]\nname = "c%s"\nurl = "rtsp://127.0.0.1:%s/cam"\ntransport = "tcp"\n' "$i" "$GST"
  done; } >"$WORK/moment.toml"
spawn "$BIN" --config "$WORK/moment.toml" 2>"$WORK/moment.log"
MOMENT=$LAST
listening "$RTMP"
read -r m_ticks m_rss < <(window "$MOMENT")
playing=$(grep -c "camera playing" "$WORK/moment.log" || true)
cleanup
gst_camera "$GST"

NGINX_PORT=$(port)
mkdir -p "$WORK/nginx/logs"
sed -e "s|@PREFIX@|$WORK/nginx|g" -e "s|@PORT@|$NGINX_PORT|g" "$HERE/nginx-rtmp.conf" >"$WORK/nginx/nginx.conf"
spawn nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
NGINX=$LAST
listening "$NGINX_PORT"
FF=()
for i in $(seq 1 "$CAMS"); do
  spawn ffmpeg -hide_banner -nostdin -loglevel error -rtsp_transport tcp -i "rtsp://127.0.0.1:$GST/cam" \
    -c copy -f flv "rtmp://127.0.0.1:$NGINX_PORT/live/c$i" 2>>"$WORK/ffmpeg.log"
  FF+=("$LAST")
done
read -r f_ticks f_rss < <(window "$NGINX" "${FF[@]}")
alive=0; for p in "${FF[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
cleanup
python3 - "$CAMS" "$SECS" "$HZ" "$m_ticks" "$m_rss" "$f_ticks" "$f_rss" "$playing" "$alive" <<'PY'
import sys
n, secs, hz, mt, mr, ft, fr, playing, alive = map(int, sys.argv[1:])
mc = mt / hz * 1000 / (n * secs); fc = ft / hz * 1000 / (n * secs)
print(f"moment: {mc:.3f} ms CPU per camera-second, {mr / n:.0f} KiB RSS per camera ({playing} of {n} playing)")
print(f"ffmpeg -c copy into nginx-rtmp: {fc:.3f} ms CPU per camera-second, {fr / n:.0f} KiB RSS per camera ({alive} of {n} ffmpeg alive)")
print(f"ratio moment / ffmpeg+nginx: CPU {mc / max(fc, 1e-9):.3f}, RSS {mr / max(fr, 1):.3f}")
PY
