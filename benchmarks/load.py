"""Load test of a local ``digits serve``: a bounded number of requests from N concurrent clients.

Each client (one keep-alive connection) posts an image, waits for the answer and posts again, until
the total is reached. Prints requests/s, latency percentiles (p50, p90, p99, max) and the error
count. The request is encoded once with httpx and then sent by a minimal asyncio client (httpx's own
per-request cost would compete with the server for the same cores); ``--client httpx`` uses httpx.

    digits serve &                                   # in another terminal
    python benchmarks/load.py --requests 5000 --concurrency 16

The image is what the web page sends for a hand-drawn 7 (its canvas at a quarter of its size, PNG), or
``--image FILE``.
Only loopback addresses are accepted: this is a local benchmark, not a tool for other hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import ipaddress
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx


def canvas_png() -> bytes:
    """What the drawing page uploads: its 420x280 canvas (a black 7, 20-pixel strokes on white) at
    a quarter of its size, as an opaque RGBA PNG."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (420, 280), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(160, 60), (260, 60), (195, 225)], fill="black", width=20, joint="curve")
    for x, y in [(160, 60), (195, 225)]:
        draw.ellipse([(x - 10, y - 10), (x + 10, y + 10)], fill="black")
    out = io.BytesIO()
    image.resize((105, 70), Image.Resampling.BILINEAR).save(out, "PNG")
    return out.getvalue()


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _request(url: str, endpoint: str, image: bytes, as_json: bool) -> bytes:
    """The complete HTTP/1.1 request, encoded once (by httpx) and then sent as-is every time."""
    if as_json:
        body = {"json": {"image": base64.b64encode(image).decode()}}
    else:
        body = {"files": {"file": ("digit.png", image, "image/png")}}
    request = httpx.Request("POST", url.rstrip("/") + endpoint, **body)
    head = [f"POST {endpoint} HTTP/1.1", f"Host: {request.url.netloc.decode()}"]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + request.read()


async def _raw_post(url: str, payload: bytes):
    """A minimal keep-alive HTTP/1.1 client: send the request, return the status of each answer.

    httpx spends ~2 ms of CPU per request; on a two-core machine shared with the server, that
    measures the client more than the server. This loop costs a small fraction of that.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)

    async def post() -> int:
        writer.write(payload)
        status_line = await reader.readuntil(b"\r\n")
        length = 0
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(status_line.split()[1])

    return post, writer


# One function on purpose: the clients, the timing and the statistics share one event loop's state.
async def run(
    url: str, endpoint: str, image: bytes, requests: int, concurrency: int, as_json: bool, client: str
) -> dict:
    """Fire ``requests`` posts from ``concurrency`` clients; return the statistics."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    remaining = 0
    payload = _request(url, endpoint, image, as_json)

    async def client_loop(post, record: bool) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            try:
                status = await post()
                outcome = "ok" if status == 200 else f"HTTP {status}"
            except (OSError, asyncio.IncompleteReadError, httpx.HTTPError) as exc:
                outcome = type(exc).__name__
            if record:
                latencies.append(time.perf_counter() - start)
                if outcome != "ok":
                    errors[outcome] = errors.get(outcome, 0) + 1

    async def phase(posts, count: int, record: bool) -> float:
        nonlocal remaining
        remaining = count
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(post, record) for post in posts))
        return time.perf_counter() - start

    # Warm-up: open the connections and let the server reach its steady state; not counted.
    warmup = min(requests, 20 * concurrency)
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as session:
            head, _, body = payload.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])

            async def post() -> int:
                return (await session.post(endpoint, content=body, headers=headers)).status_code

            await phase([post] * concurrency, warmup, False)
            elapsed = await phase([post] * concurrency, requests, True)
    else:
        connections = [await _raw_post(url, payload) for _ in range(concurrency)]
        try:
            await phase([post for post, _ in connections], warmup, False)
            elapsed = await phase([post for post, _ in connections], requests, True)
        finally:
            for _, writer in connections:
                writer.close()

    ms = sorted(1e3 * t for t in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]

    return {
        "requests": len(ms),
        "concurrency": concurrency,
        "client": client,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(pct(50), 2),
        "p90_ms": round(pct(90), 2),
        "p99_ms": round(pct(99), 2),
        "max_ms": round(ms[-1], 2),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def _event_loop_runner():
    """uvloop's runner where it is installed (it comes with the server): less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: list[str] | None = None) -> int:
    """Time the requests against a running server and print throughput and latency."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000", help="server (default: http://127.0.0.1:8000)"
    )
    parser.add_argument("--endpoint", default="/api/predict", help="path to post to (default: /api/predict)")
    parser.add_argument("--requests", type=int, default=5000, help="requests to time (default: 5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default: 16)")
    parser.add_argument("--image", help="image file to send (default: the page's upload of a drawn 7)")
    parser.add_argument("--json", action="store_true", help="send base64 JSON instead of a multipart upload")
    parser.add_argument(
        "--client", choices=["raw", "httpx"], default="raw", help="raw asyncio streams (default) or httpx"
    )
    parser.add_argument("--report", help="also write the statistics to this JSON file")
    args = parser.parse_args(argv)
    if not _is_loopback(args.url):
        parser.error(f"{args.url}: only loopback addresses (127.0.0.1, localhost, ::1) are allowed")
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    try:
        image = Path(args.image).read_bytes() if args.image else canvas_png()
    except OSError as exc:
        parser.error(f"--image: {exc}")
    try:
        stats = _event_loop_runner()(
            run(args.url, args.endpoint, image, args.requests, args.concurrency, args.json, args.client)
        )
    except (OSError, httpx.ConnectError) as exc:
        print(f"load.py: error: cannot reach {args.url} ({exc}); start it: digits serve", file=sys.stderr)
        return 2
    print(
        f"{stats['requests']} requests, {stats['concurrency']} concurrent clients, {stats['seconds']} s: "
        f"{stats['requests_per_s']} requests/s\n"
        f"latency p50 {stats['p50_ms']} ms, p90 {stats['p90_ms']} ms, p99 {stats['p99_ms']} ms, "
        f"max {stats['max_ms']} ms\n"
        f"errors: {stats['errors']}" + (f" {stats['error_kinds']}" if stats["errors"] else "")
    )
    if args.report:
        Path(args.report).write_text(json.dumps(stats, indent=2) + "\n")
    return 1 if stats["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
