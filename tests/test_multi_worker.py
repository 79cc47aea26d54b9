"""Training beyond one machine: two ``digits train --distribute multi-worker`` processes on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from digits import runs


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_one_model_together_into_one_run_folder(tmp_path, mnist_dir):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    command = [
        sys.executable, "-m", "digits", "train", "--distribute", "multi-worker", "--epochs", "2",
        "--train-size", "2000", "--val-size", "1000", "--out", "run", "--data-dir", str(mnist_dir),
    ]  # fmt: skip
    workers = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env={
                **os.environ,
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    # Trained together: the same synchronised model, so the same figures every epoch on both.
    epochs = [re.findall(r"accuracy: [\d.]+ - loss: [\d.]+ - val_accuracy: [\d.]+", out) for out in outputs]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1]
    assert all("on 2 devices" in out for out in outputs)
    # One run folder, the chief's; the other worker's scratch folder is gone.
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert runs.read_config(tmp_path / "run").settings["distribute"] == "multi-worker"
    assert runs.read_metrics(tmp_path / "run").test_accuracy > 0.5
    assert (tmp_path / "run" / "model.keras").is_file()
