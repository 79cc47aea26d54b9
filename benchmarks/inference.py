"""Inference side by side in one run: the TensorFlow path (model.keras) and the ONNX Runtime path
(model.onnx) of the served default model.

Measures ``digits predict`` on one image (wall time, median of three, and peak memory), images per
second at batch 1, 16 and 1024, one server worker's resident memory and time from start to first
answer, and the load test (benchmarks/load.py: 16 keep-alive clients posting the page's own upload to
``digits serve`` with its default two workers). Both paths run on the same machine minutes apart,
since this kind of machine's speed drifts: compare the ratios. Needs the training extra (TensorFlow).

    python benchmarks/inference.py            # writes docs/inference.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import load
import numpy as np

from digits import data as mnist
from digits import log_stderr
from digits.inference import DEFAULT_MODEL, KerasClassifier, OnnxClassifier
from digits.report import commit
from digits.runs import machine

ROOT = Path(__file__).resolve().parents[1]
PATHS = {"TensorFlow": DEFAULT_MODEL.with_name("model.keras"), "ONNX Runtime": DEFAULT_MODEL}
LOADERS = {"TensorFlow": KerasClassifier, "ONNX Runtime": OnnxClassifier}
DIGITS = [sys.executable, "-m", "digits"]


def predict_once(model: Path, image: Path) -> tuple[float, float]:
    """One ``digits predict MODEL IMAGE`` in a fresh process: (seconds, peak resident MB)."""
    start = time.perf_counter()
    process = subprocess.Popen([*DIGITS, "predict", str(model), str(image)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"digits predict {model} failed")
    return seconds, usage.ru_maxrss / 1024


def images_per_second(classifier, x: np.ndarray, batch: int, images: int) -> float:
    """Best of three: ``images`` images ``batch`` at a time, after a warm-up."""
    classifier.predict_proba(x[:batch])
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(0, images, batch):
            classifier.predict_proba(x[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return images / best


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start_server(model: Path, workers: int) -> tuple[subprocess.Popen, str, float]:
    """``digits serve`` on a free port: the process, its URL and the seconds to its first answer."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    server = subprocess.Popen(
        [*DIGITS, "serve", "--model", str(model), "--workers", str(workers), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while time.perf_counter() - start < 120:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return server, url, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.02)
    server.kill()
    raise SystemExit(f"digits serve --model {model} did not answer within 120 s")


def server_worker(model: Path, image: bytes) -> dict:
    """One worker: seconds from start to first answer, resident MB after 200 reads."""
    server, url, seconds = _start_server(model, workers=1)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(200):
                client.post("/api/predict", files={"file": ("seven.png", image, "image/png")})
        return {"first_answer_s": seconds, "worker_mb": _rss_mb(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def load_test(model: Path, requests: int) -> dict:
    """benchmarks/load.py against ``digits serve`` (two workers), 16 keep-alive clients.

    The client runs in its own process, as a user would run it: this one holds TensorFlow and the
    test set, whose heap would slow the client and blur the latency tail.
    """
    server, url, _ = _start_server(model, workers=2)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            report = Path(scratch) / "load.json"
            command = [sys.executable, str(ROOT / "benchmarks" / "load.py"), "--url", url]
            command += ["--requests", str(requests), "--concurrency", "16", "--report", str(report)]
            subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
            return json.loads(report.read_text())
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(data_dir, requests: int, log=log_stderr) -> dict:
    """Every figure, for both paths."""
    (_, _), (x_test, _) = mnist.load_mnist(data_dir)
    x_test = mnist.scale(x_test)
    upload = load.canvas_png()
    results = {name: {} for name in PATHS}
    with tempfile.TemporaryDirectory() as scratch:
        image = Path(scratch) / "one.png"
        image.write_bytes(upload)
        for name, model in PATHS.items():
            log(f"{name}: digits predict one.png, three times")
            runs = [predict_once(model, image) for _ in range(3)]
            results[name]["predict_s"] = statistics.median(s for s, _ in runs)
            results[name]["predict_mb"] = max(mb for _, mb in runs)
    for name, model in PATHS.items():
        log(f"{name}: images per second")
        classifier = LOADERS[name](model)
        for batch, images in ((1, 500), (16, 4096), (1024, 10240)):
            results[name][f"batch_{batch}"] = images_per_second(classifier, x_test, batch, images)
    for name, model in PATHS.items():
        log(f"{name}: a server worker's start and memory")
        results[name].update(server_worker(model, upload))
    for name, model in PATHS.items():
        log(f"{name}: load test, {requests} requests")
        results[name]["load"] = load_test(model, requests)
    return results


def _ratio(tf: float, onnx: float, lower_is_better: bool) -> str:
    return f"{(tf / onnx if lower_is_better else onnx / tf):.1f}x"


def markdown(results: dict, requests: int) -> str:
    """docs/inference.md."""
    tf, onnx = results["TensorFlow"], results["ONNX Runtime"]
    rows = [
        ("`digits predict one.png`: wall time (median of 3)", "predict_s", "{:.2f} s", True),
        ("`digits predict one.png`: peak memory", "predict_mb", "{:.0f} MB", True),
        ("images/s, batch 1", "batch_1", "{:,.0f}", False),
        ("images/s, batch 16", "batch_16", "{:,.0f}", False),
        ("images/s, batch 1024", "batch_1024", "{:,.0f}", False),
        ("server worker: resident memory after 200 reads", "worker_mb", "{:.0f} MB", True),
        ("server worker: start to first answer", "first_answer_s", "{:.2f} s", True),
    ]
    lines = [
        "# Inference: TensorFlow and ONNX Runtime side by side",
        "",
        f"Written by `python benchmarks/inference.py` on {datetime.date.today()}, commit {commit()},"
        f" {machine()}. The served default model (`src/digits/default_model`) as `model.keras` through"
        " TensorFlow and as `model.onnx` through ONNX Runtime, one after the other in one run; the"
        " ratio is how many times better ONNX Runtime does.",
        "",
        "| measure | TensorFlow | ONNX Runtime | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key, fmt, lower in rows:
        ratio = _ratio(tf[key], onnx[key], lower)
        lines.append(f"| {label} | {fmt.format(tf[key])} | {fmt.format(onnx[key])} | {ratio} |")
    load_tf, load_onnx = tf["load"], onnx["load"]
    lines += [
        f"| load test: requests/s | {load_tf['requests_per_s']:,.0f} | {load_onnx['requests_per_s']:,.0f}"
        f" | {_ratio(load_tf['requests_per_s'], load_onnx['requests_per_s'], False)} |",
        f"| load test: p50 latency | {load_tf['p50_ms']:.1f} ms | {load_onnx['p50_ms']:.1f} ms"
        f" | {_ratio(load_tf['p50_ms'], load_onnx['p50_ms'], True)} |",
        f"| load test: p99 latency | {load_tf['p99_ms']:.1f} ms | {load_onnx['p99_ms']:.1f} ms"
        f" | {_ratio(load_tf['p99_ms'], load_onnx['p99_ms'], True)} |",
        f"| load test: errors | {load_tf['errors']} | {load_onnx['errors']} | |",
        "",
        f"The load test: {requests:,} requests from 16 keep-alive clients posting the drawing page's own"
        " upload (`benchmarks/load.py`) to `digits serve` with two workers, client and server on the"
        " same cores. The base install's size (no TensorFlow) is checked by `.ci/lean-install`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=3000, help="load-test requests per path (default 3000)"
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "inference.md"), help="the Markdown to write")
    parser.add_argument("--data-dir", help="the MNIST folder (default: $DIGITS_DATA_DIR, else the cache)")
    args = parser.parse_args(argv)
    results = measure(args.data_dir, args.requests)
    Path(args.out).write_text(markdown(results, args.requests))
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
