"""GET /metrics (Prometheus), summed over worker processes, and opt-in CORS."""

from __future__ import annotations

import time

import httpx2 as httpx
import pytest
from conftest import one_png, serving
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from digits import runs
from digits.inference import DEFAULT_MODEL
from digits.server import create_app


def _upload() -> dict:
    return {"files": {"file": ("one.png", one_png(), "image/png")}}


def samples(text: str) -> dict[tuple, float]:
    """The exposition's samples as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_latency_answers_and_name_the_model():
    with TestClient(create_app(DEFAULT_MODEL)) as client:
        for _ in range(3):
            assert client.post("/api/predict", **_upload()).status_code == 200
        assert (
            client.post("/api/predict", content=b"x", headers={"content-type": "text/plain"}).status_code
            == 415
        )
        assert client.get("/no/such/page").status_code == 404
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    requests = "digits_requests_total"
    assert found[(requests, (("endpoint", "/api/predict"), ("status", "200")))] == 3
    assert found[(requests, (("endpoint", "/api/predict"), ("status", "415")))] == 1
    # Unknown paths share one label: a client cannot grow the metrics by inventing paths.
    assert found[(requests, (("endpoint", "unmatched"), ("status", "404")))] == 1
    assert found[("digits_request_seconds_count", (("endpoint", "/api/predict"),))] == 4
    assert found[("digits_answers_total", (("answer", "1"),))] == 3
    model = [labels for name, labels in found if name == "digits_model_info"]
    assert model == [(("model", runs.read_config(DEFAULT_MODEL.parent).model),)]


def test_cors_is_off_unless_origins_are_given():
    preflight = {
        "origin": "https://example.org",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    with TestClient(create_app(DEFAULT_MODEL)) as client:
        answer = client.get("/api/health", headers={"origin": "https://example.org"})
        assert "access-control-allow-origin" not in answer.headers
    with TestClient(create_app(DEFAULT_MODEL, cors_origins=("https://example.org",))) as client:
        allowed = client.options("/api/predict", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://example.org"
        other = client.options("/api/predict", headers={**preflight, "origin": "https://elsewhere.example"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        answer = client.post("/api/predict", headers={"origin": "https://example.org"}, **_upload())
        assert answer.headers["access-control-allow-origin"] == "https://example.org"


def test_metrics_add_up_across_worker_processes():
    with serving(2) as (server, base):
        pids, health_checks, deadline = set(), 0, time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            try:  # a new connection each time, so both workers are reached
                pids.add(httpx.get(f"{base}/api/health", timeout=5).json()["pid"])
                health_checks += 1
            except httpx.TransportError:
                time.sleep(0.2)
        assert len(pids) == 2, "both workers should answer"
        for _ in range(10):
            assert httpx.post(f"{base}/api/predict", timeout=10, **_upload()).status_code == 200
        # Whichever worker answers, it reports the whole server's counts.
        for _ in range(4):
            found = samples(httpx.get(f"{base}/metrics", timeout=5).text)
            assert found[("digits_requests_total", (("endpoint", "/api/predict"), ("status", "200")))] == 10
            assert found[("digits_requests_total", (("endpoint", "/api/health"), ("status", "200")))] == (
                health_checks
            )
            assert found[("digits_answers_total", (("answer", "1"),))] == 10
        server.terminate()
        assert server.wait(timeout=60) == 0


def test_serve_settings_come_from_the_environment_and_are_checked(monkeypatch, capsys):
    from digits.cli import build_parser

    monkeypatch.setenv("DIGITS_PORT", "9123")
    monkeypatch.setenv("DIGITS_WORKERS", "3")
    monkeypatch.setenv("DIGITS_HOST", "0.0.0.0")
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.workers, args.cors_origin) == ("0.0.0.0", 9123, 3, [])
    assert build_parser().parse_args(["serve", "--port", "8080"]).port == 8080  # a flag wins
    monkeypatch.setenv("DIGITS_PORT", "eighty")
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve"])
    assert exit_.value.code == 2 and "argument --port: invalid int value: 'eighty'" in capsys.readouterr().err
