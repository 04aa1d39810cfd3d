#!/usr/bin/python3
"""A lossy network between an RTSP camera and its client, for tests/rtsp.rs, on 127.0.0.1.

The kernel's netem is not available everywhere the tests run (it is a module that small VM
kernels leave out), so the path is impaired in user space: this proxy forwards RTSP and, for
UDP sessions, rewrites the SETUP Transport ports so that RTP and RTCP from the camera pass
through it, where packets are dropped and reordered at the given rates. RTCP from the client
(receiver reports) goes back to the camera untouched.

Usage: /usr/bin/python3 tests/lossy_rtsp_proxy.py LISTEN_PORT CAMERA_PORT LOSS REORDER [SEED]
  LOSS, REORDER: fractions of camera RTP packets to drop, and to hold back behind the next
  packet (then sent after it, a swap on the wire).
Prints "proxy ready", then per session "udp relay ..." and every 5 s a line with counts:
"rtp forwarded=N dropped=N reordered=N".
"""
import random
import re
import select
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def udp_pair():
    """Two UDP sockets on consecutive ports, the first even (RTP, RTCP)."""
    while True:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind((HOST, 0))
        port = a.getsockname()[1]
        if port % 2 == 0:
            b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                b.bind((HOST, port + 1))
                return a, b
            except OSError:
                b.close()
        a.close()


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.forwarded = 0
        self.dropped = 0
        self.reordered = 0

    def line(self):
        with self.lock:
            return (f"rtp forwarded={self.forwarded} dropped={self.dropped} "
                    f"reordered={self.reordered}")


class UdpRelay:
    """One stream: camera-facing sockets (the client ports the camera sends to) and
    client-facing sockets (the server ports the client connects to)."""

    def __init__(self, client_ports, loss, reorder, rng, counts):
        self.cam_rtp, self.cam_rtcp = udp_pair()
        self.cli_rtp, self.cli_rtcp = udp_pair()
        self.client_ports = client_ports
        self.server_ports = None
        self.loss, self.reorder, self.rng, self.counts = loss, reorder, rng, counts
        self.held = None
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        socks = [self.cam_rtp, self.cam_rtcp, self.cli_rtp, self.cli_rtcp]
        while True:
            ready, _, _ = select.select(socks, [], [], 1.0)
            for s in ready:
                data, _ = s.recvfrom(65536)
                if s is self.cam_rtp:
                    self.camera_rtp(data)
                elif s is self.cam_rtcp:
                    self.cli_rtcp.sendto(data, (HOST, self.client_ports[1]))
                elif self.server_ports is not None:
                    # The client's hole punches and receiver reports go to the camera.
                    cam = self.cam_rtp if s is self.cli_rtp else self.cam_rtcp
                    port = self.server_ports[0] if s is self.cli_rtp else self.server_ports[1]
                    cam.sendto(data, (HOST, port))

    def camera_rtp(self, data):
        out = (HOST, self.client_ports[0])
        with self.counts.lock:
            if self.rng.random() < self.loss:
                self.counts.dropped += 1
                return
            if self.held is None and self.rng.random() < self.reorder:
                self.held = data
                self.counts.reordered += 1
                return
            self.cli_rtp.sendto(data, out)
            self.counts.forwarded += 1
            if self.held is not None:
                self.cli_rtp.sendto(self.held, out)
                self.counts.forwarded += 1
                self.held = None


def read_message(sock, buf):
    """One RTSP message (head, body) from sock, with buf holding bytes already read; or
    interleaved data ($), passed through as head. None at EOF."""
    while True:
        if buf[:1] == b"$" and len(buf) >= 4:
            n = 4 + int.from_bytes(buf[2:4], "big")
            if len(buf) >= n:
                return buf[:n], b"", buf[n:]
        else:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end + 4]
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                n = int(m.group(1)) if m else 0
                if len(buf) >= end + 4 + n:
                    return head, buf[end + 4:end + 4 + n], buf[end + 4 + n:]
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


def rewrite(head, pattern, replace):
    return re.sub(pattern, replace, head)


def session(client, camera_port, loss, reorder, rng, counts):
    cam = socket.create_connection((HOST, camera_port))
    relays = {}  # CSeq of a SETUP -> relay
    lock = threading.Lock()

    def upstream():
        buf = b""
        while True:
            r = read_message(client, buf)
            if r is None:
                cam.close()
                return
            head, body, buf = r
            if head.startswith(b"SETUP"):
                m = re.search(rb"client_port=(\d+)-(\d+)", head)
                cseq = re.search(rb"(?im)^cseq:\s*(\d+)", head)
                if m and cseq:
                    relay = UdpRelay((int(m.group(1)), int(m.group(2))), loss, reorder, rng,
                                     counts)
                    with lock:
                        relays[cseq.group(1)] = relay
                    p = relay.cam_rtp.getsockname()[1]
                    head = head.replace(m.group(0), b"client_port=%d-%d" % (p, p + 1))
            cam.sendall(head + body)

    def downstream():
        buf = b""
        while True:
            r = read_message(cam, buf)
            if r is None:
                client.close()
                return
            head, body, buf = r
            cseq = re.search(rb"(?im)^cseq:\s*(\d+)", head)
            with lock:
                relay = relays.pop(cseq.group(1), None) if cseq else None
            if relay is not None and head.startswith(b"RTSP/"):
                m = re.search(rb"server_port=(\d+)-(\d+)", head)
                if m:
                    relay.server_ports = (int(m.group(1)), int(m.group(2)))
                    q = relay.cli_rtp.getsockname()[1]
                    head = head.replace(m.group(0), b"server_port=%d-%d" % (q, q + 1))
                c = relay.client_ports
                head = rewrite(head, rb"client_port=\d+-\d+", b"client_port=%d-%d" % c)
                head = rewrite(head, rb";source=[^;\r]*", b"")
                print(f"udp relay client={c} server={relay.server_ports}", flush=True)
            client.sendall(head + body)

    threading.Thread(target=upstream, daemon=True).start()
    threading.Thread(target=downstream, daemon=True).start()


def main():
    if len(sys.argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    listen_port, camera_port = int(sys.argv[1]), int(sys.argv[2])
    loss, reorder = float(sys.argv[3]), float(sys.argv[4])
    rng = random.Random(int(sys.argv[5]) if len(sys.argv) == 6 else 1)
    counts = Counts()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, listen_port))
    srv.listen(8)

    def report():
        while True:
            time.sleep(5)
            print(counts.line(), flush=True)

    threading.Thread(target=report, daemon=True).start()
    print(f"proxy ready port={listen_port}", flush=True)
    while True:
        client, _ = srv.accept()
        session(client, camera_port, loss, reorder, rng, counts)


if __name__ == "__main__":
    main()
