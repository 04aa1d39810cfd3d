#!/usr/bin/env python3
"""Opens a page in headless Chromium and reports what a script on it says, for tests/hls.rs.

Usage: chromium_check.py URL --expr JS [--at SECONDS ...] [--screenshot FILE.png]
                         [--size 1280,800]

Talks the DevTools protocol over --remote-debugging-pipe (fds 3 and 4, NUL-terminated JSON),
so it needs nothing beyond Python and Debian's chromium. Prints one JSON line:
{"samples": [[seconds, value], ...], "console_errors": [...]} where each value is JS evaluated
(returnByValue) at that many seconds after the navigation started.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--expr", required=True)
    ap.add_argument("--at", type=float, action="append", default=[])
    ap.add_argument("--screenshot")
    ap.add_argument("--size", default="1280,800")
    a = ap.parse_args()
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="moment-chromium-")

    def child_fds():
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    proc = subprocess.Popen(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", "--no-first-run",
         "--disable-dev-shm-usage", f"--window-size={a.size}", f"--user-data-dir={profile}",
         "--remote-debugging-pipe", "about:blank"],
        pass_fds=(3, 4), preexec_fn=child_fds,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    out = os.fdopen(to_chrome_w, "wb", buffering=0)
    inp = os.fdopen(from_chrome_r, "rb", buffering=0)
    buf = b""
    next_id = [0]
    events = []

    def send(method, params=None, session=None):
        next_id[0] += 1
        msg = {"id": next_id[0], "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        out.write(json.dumps(msg).encode() + b"\0")
        return next_id[0]

    def recv():
        nonlocal buf
        while b"\0" not in buf:
            chunk = inp.read(65536)
            if not chunk:
                raise SystemExit("chromium closed the pipe")
            buf += chunk
        msg, buf = buf.split(b"\0", 1)
        return json.loads(msg)

    def call(method, params=None, session=None):
        i = send(method, params, session)
        while True:
            m = recv()
            if m.get("id") == i:
                if "error" in m:
                    raise SystemExit(f"{method}: {m['error']}")
                return m.get("result", {})
            events.append(m)

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        call("Runtime.enable", session=session)
        call("Page.enable", session=session)
        start = time.monotonic()
        call("Page.navigate", {"url": a.url}, session=session)
        samples = []
        for at in sorted(a.at or [5.0]):
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            r = call("Runtime.evaluate", {"expression": a.expr, "returnByValue": True}, session=session)
            samples.append([round(time.monotonic() - start, 3), r.get("result", {}).get("value")])
        if a.screenshot:
            png = call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
            with open(a.screenshot, "wb") as f:
                f.write(base64.b64decode(png))
        errors = [
            e["params"]["args"][0].get("value")
            for e in events
            if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error" and e["params"].get("args")
        ] + [
            e["params"]["exceptionDetails"].get("text")
            for e in events if e.get("method") == "Runtime.exceptionThrown"
        ]
        print(json.dumps({"samples": samples, "console_errors": errors}))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
