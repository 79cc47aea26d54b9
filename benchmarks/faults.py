"""The server under faults and abuse, at full size: what tests/test_server_faults.py checks in small.

Each check starts its own ``digits serve --workers 2`` (the packaged model) on a free loopback port:

1. ``kill``: 16 keep-alive clients read digits; one worker is killed with SIGKILL; how many requests
   fail, and how long after the kill the last failure began.
2. ``sigterm``: 20 clients each hold half a request body; SIGTERM; seconds until every process is gone.
3. ``flood``: 45,000 connections that send half a header, from 127.0.0.1, .2 and .3 (three processes,
   15,000 each), while one normal client keeps reading digits; how many of its requests succeed.

    python benchmarks/faults.py                 # all three, about two minutes
    python benchmarks/faults.py --only flood
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _png() -> bytes:
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 13:16] = 255
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def _serve() -> tuple[subprocess.Popen, str, set[int]]:
    """``digits serve --workers 2`` on a free port, once both workers answer: (process, url, pids)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "digits", "serve", "--workers", "2", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url, pids, deadline = f"http://127.0.0.1:{port}", set(), time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:
        try:
            pids.add(httpx.get(f"{url}/api/health", timeout=1).json()["pid"])
        except httpx.TransportError:
            time.sleep(0.1)
    return server, url, pids


def _clients(url: str, count: int, stop: threading.Event, results: list) -> list[threading.Thread]:
    """``count`` keep-alive clients posting a digit until ``stop``; each result is (start, ok)."""
    png = _png()

    def client():
        with httpx.Client(timeout=10) as session:  # reconnects after an error, as a browser does
            while not stop.is_set():
                start = time.monotonic()
                try:
                    ok = session.post(
                        f"{url}/api/predict", files={"file": ("a.png", png, "image/png")}
                    ).is_success
                except httpx.HTTPError:
                    ok = False
                results.append((start, ok))

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def kill() -> str:
    server, url, pids = _serve()
    stop, results = threading.Event(), []
    try:
        threads = _clients(url, 16, stop, results)
        time.sleep(3)
        killed = time.monotonic()
        os.kill(min(pids), signal.SIGKILL)
        time.sleep(10)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait()
    failed = [start - killed for start, ok in results if not ok]
    late = [t for t in failed if t > 0]
    summary = (
        f"kill: one of two workers killed under 16 clients: {len(failed)} of {len(results)} requests failed"
    )
    if late:
        return f"{summary}; the last began {max(late):.2f} s after the kill"
    return f"{summary}, all begun before the kill (in flight on the dead worker)"


def sigterm() -> str:
    server, url, pids = _serve()
    port = int(url.rsplit(":", 1)[1])
    hung = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"image": "'
        )
        hung.append(sock)
    time.sleep(0.5)
    start = time.monotonic()
    server.terminate()
    code = server.wait()
    seconds = time.monotonic() - start
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for sock in hung:
        sock.close()
    return (
        f"sigterm: 20 clients holding half a body: exit {code}, every process gone after {seconds:.1f} s"
        + (f" (still alive: {alive})" if alive else "")
    )


_FLOOD = """
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
source, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, failed = [], 0
for _ in range(count):
    sock = socket.socket()
    try:
        sock.bind((source, 0))
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /api/health HTTP/1.1\\r\\nhost: x\\r\\n")
        held.append(sock)
    except OSError:
        failed += 1
        sock.close()
print(f"  {source}: {len(held):,} connections opened, {failed:,} failed", flush=True)
time.sleep(10)
"""


def flood() -> str:
    server, url, _ = _serve()
    port = int(url.rsplit(":", 1)[1])
    stop, results = threading.Event(), []
    try:
        threads = _clients(url, 1, stop, results)
        floods = [
            subprocess.Popen([sys.executable, "-c", _FLOOD, f"127.0.0.{k}", str(port), "15000"])
            for k in (1, 2, 3)
        ]
        for process in floods:
            process.wait()
        stop.set()
        for thread in threads:
            thread.join()
        serving = httpx.get(f"{url}/api/health", timeout=5).is_success
    finally:
        server.terminate()
        server.wait()
    ok = sum(ok for _, ok in results)
    return (
        f"flood: 45,000 half-header connections: the normal client's requests {ok} of {len(results)}"
        f" succeeded; serving afterwards: {serving}"
    )


CHECKS = {"kill": kill, "sigterm": sigterm, "flood": flood}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(CHECKS), help="run one check (default: all three)")
    args = parser.parse_args(argv)
    for name, check in CHECKS.items():
        if args.only in (None, name):
            print(check(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
