#!/usr/bin/env bash
# Remakes the committed h264_parameter_sets and h264_transcode seeds with Debian 12's ffmpeg 5.1:
# a 64x64 10 fps x264 baseline clip of lavfi testsrc (SEI stripped), remuxed to FLV so the avcC
# record and the AVCC access units come out as FLV carries them, plus the avcC records of
# fixtures/h264-baseline-aac.mp4 (640x360, above the fuzz limits) and fixtures/h264-high-aac.mp4.
# Each seed is in its target's input format (see the targets' doc comments); all under 4 KB.
# Usage: bash fuzz/seeds/make-h264-seeds.sh
set -euo pipefail
S="$(cd "$(dirname "$0")" && pwd)"
R="$S/../.."
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
FF="ffmpeg -hide_banner -loglevel error -y"
$FF -f lavfi -i testsrc=size=64x64:rate=10:duration=1 \
    -c:v libx264 -profile:v baseline -g 10 -pix_fmt yuv420p -bsf:v filter_units=remove_types=6 \
    -f flv "$T/small.flv"
$FF -i "$R/fixtures/h264-baseline-aac.mp4" -an -c copy -frames:v 1 -f flv "$T/baseline.flv"
$FF -i "$R/fixtures/h264-high-aac.mp4" -an -c copy -frames:v 1 -f flv "$T/high.flv"
python3 - "$T" "$S" <<'PY'
import struct, sys
tmp, seeds = sys.argv[1], sys.argv[2]

def video_tags(path):
    """(avc_packet_type, keyframe, payload) of each FLV video tag."""
    d = open(path, 'rb').read()
    pos = struct.unpack('>I', d[5:9])[0] + 4
    while pos + 11 <= len(d):
        kind, size = d[pos], int.from_bytes(d[pos+1:pos+4], 'big')
        body = d[pos+11:pos+11+size]
        pos += 11 + size + 4
        if kind == 9 and body and body[0] & 0x0f == 7:
            yield body[1], body[0] >> 4 == 1, body[5:]

def frames(path):
    config, aus = None, []
    for t, key, payload in video_tags(path):
        if t == 0:
            config = payload
        elif t == 1:
            aus.append((key, payload))
    return config, aus

def rec(kind, delta, payload):
    return bytes([kind, delta & 0xff]) + struct.pack('>H', len(payload)) + payload

def write(target, name, data):
    open(f'{seeds}/{target}/{name}', 'wb').write(data)

small_cfg, small = frames(f'{tmp}/small.flv')
base_cfg, base = frames(f'{tmp}/baseline.flv')
high_cfg, _ = frames(f'{tmp}/high.flv')
assert small[0][0] and small_cfg

# h264_parameter_sets: mode byte 0 (raw), then an avcC record or an AVCC access unit.
write('h264_parameter_sets', 'x264-64x64-baseline-avcc', b'\0' + small_cfg)
write('h264_parameter_sets', 'x264-64x64-baseline-p-frame', b'\0' + small[1][1])
write('h264_parameter_sets', 'h264-baseline-aac-avcc', b'\0' + base_cfg)
write('h264_parameter_sets', 'h264-high-aac-avcc', b'\0' + high_cfg)

# h264_transcode: header byte, then records (kind, delta, u16 length, payload).
def push(key, payload, delta=100):
    return rec(1 | (4 if key else 0), delta, payload)
five = b''.join(push(k, p) for k, p in small[:5])
# Source size, 100 ms keyframe interval: config, IDR and 4 P-frames.
write('h264_transcode', 'x264-64x64-baseline-5-frames', b'\x08' + rec(0, 0, small_cfg) + five)
# 16x16 output, 1 s interval: config, 3 frames, the config again, finish.
write('h264_transcode', 'x264-64x64-baseline-scaled-finish',
      b'\x14' + rec(0, 0, small_cfg) + b''.join(push(k, p) for k, p in small[:3])
      + rec(0, 0, small_cfg) + rec(3, 0, b''))
# 100x30 output: config, a snapshot of the IDR at quality 80, then the IDR pushed twice
# with the time going backwards.
write('h264_transcode', 'x264-64x64-baseline-snapshot-backwards',
      b'\x07' + rec(0, 0, small_cfg) + rec(2, 80, small[0][1])
      + push(True, small[0][1]) + push(True, small[0][1], -50))
# A 640x360 record (above the 256x256 limits) then the 64x64 one.
write('h264_transcode', 'h264-baseline-aac-avcc-too-large-then-64x64',
      b'\x00' + rec(0, 0, base_cfg) + rec(0, 0, small_cfg) + push(True, small[0][1]))
PY
ls -l "$S/h264_parameter_sets" "$S/h264_transcode"
