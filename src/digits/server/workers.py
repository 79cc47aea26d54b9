"""Running the app: uvicorn in one process, or in several, each with its own listening socket."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys

from digits import DigitsError
from digits.inference import resolve_model_path
from digits.server.app import MAX_UPLOAD_BYTES, create_app
from digits.server.connections import GuardedProtocol, raise_file_limit
from digits.server.memory import limit_arenas
from digits.server.metrics import MULTIPROCESS_ENV


def serve(
    model_path: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    access_log: bool = False,
    workers: int = 1,
    cors_origins: tuple[str, ...] = (),
) -> None:
    """Run the app with uvicorn until interrupted, in ``workers`` processes (each with the model)."""
    import tempfile

    import uvicorn

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    if max_upload_bytes < 1:
        raise ValueError(f"the upload limit must be positive, got {max_upload_bytes} bytes")
    settings = {
        "model_path": str(resolve_model_path(model_path)),  # fail here, before any worker starts
        "max_upload_bytes": max_upload_bytes,
        "cors_origins": list(cors_origins),
    }
    options = dict(
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        http=GuardedProtocol,  # slow clients, header size, connection bound: see connections.py
        timeout_graceful_shutdown=SHUTDOWN_SECONDS / 2,  # then requests still open are cancelled
    )
    _check_port_free(host, port)  # before the model loads, and workers sharing a port would not fail
    print(
        f"serving {settings['model_path']} on http://{host}:{port}/ once {_workers(workers)} loaded it"
        "  (API: /api/predict, /docs; Ctrl-C to stop)",
        flush=True,
    )
    if workers == 1:
        raise_file_limit()
        uvicorn.run(_app_from_settings(settings), **options)
        return
    # The workers' metrics, in files that whichever worker answers /metrics sums; gone afterwards.
    with tempfile.TemporaryDirectory(prefix="digits-metrics-") as shared:
        os.environ[MULTIPROCESS_ENV] = shared
        try:
            if hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux"):
                _run_reuse_port_workers(workers, settings, options)
            else:
                # Worker processes import the app by name and read their settings from the environment.
                os.environ[_SETTINGS_ENV] = json.dumps(settings)
                uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **options)
        finally:
            del os.environ[MULTIPROCESS_ENV]


_SETTINGS_ENV = "DIGITS_SERVE_SETTINGS"


class _OncePerMinute(logging.Filter):
    """Pass a repeated log line once a minute, with how many were held back: a client sending garbage
    in a loop must not flood the log (nor fill the disk it is written to)."""

    def __init__(self, message: str):
        super().__init__()
        self.message, self.next_at, self.held = message, 0.0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        import time

        if record.getMessage() != self.message:
            return True
        if time.monotonic() < self.next_at:
            self.held += 1
            return False
        if self.held:
            record.msg, record.args = f"{self.message} ({self.held} more in the last minute)", ()
        self.next_at, self.held = time.monotonic() + 60, 0
        return True


def _quiet_logs() -> None:
    """Keep what clients can trigger at will out of the log, or down to a line a minute."""
    import warnings

    # Pillow warns about odd files (truncated EXIF, TIFF tags) that the decoder refuses or reads anyway.
    warnings.filterwarnings("ignore", module="PIL")
    logging.getLogger("uvicorn.error").addFilter(_OncePerMinute("Invalid HTTP request received."))


def _app_from_settings(settings: dict):
    """The app of one server process, from the settings ``serve`` checked."""
    limit_arenas()  # see digits.server.memory
    _quiet_logs()
    # One thread for the model: the web server needs the other cores for HTTP and decoding.
    return create_app(
        settings["model_path"],
        max_upload_bytes=settings["max_upload_bytes"],
        threads=1,
        cors_origins=tuple(settings["cors_origins"]),
        workers_replaced=settings.get("restarts", 0),
    )


def app_from_environment():
    """The app of one ``serve(workers=N)`` worker process, configured by ``serve`` through the environment."""
    return _app_from_settings(json.loads(os.environ[_SETTINGS_ENV]))


def _socket_for(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)


def _workers(count: int) -> str:
    return "the worker has" if count == 1 else f"the {count} workers have"


def _check_port_free(host: str, port: int) -> None:
    """Fail with a clear message if the address is taken (shared SO_REUSEPORT binds would not fail)."""
    with _socket_for(host) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # lingering closed connections are fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DigitsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


#: Seconds from SIGTERM to every process gone: workers finish what they can, then are killed.
SHUTDOWN_SECONDS = 10.0
#: Worker deaths within a minute after which the server gives up (a crash at every start, say).
MAX_RESTARTS_PER_MINUTE = 10


def _run_reuse_port_workers(workers: int, settings: dict, options: dict) -> None:
    """One listening socket per worker process, bound with SO_REUSEPORT; a worker that dies is replaced.

    uvicorn's own workers share one socket, and whichever process wakes first accepts every waiting
    connection: with keep-alive clients one worker ends up with most of them. With a socket each, the
    kernel spreads connections across the workers, and while one is replaced the others keep serving.
    """
    import multiprocessing
    import time
    from multiprocessing.connection import wait

    # Stopped with SIGTERM (kill, a service manager): leave through the cleanup below, workers included.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no TensorFlow state forked
    errors = context.SimpleQueue()  # why a worker could not start: every worker fails alike, say it once
    deaths: list[float] = []

    def start() -> multiprocessing.Process:
        process = context.Process(
            target=_reuse_port_worker, args=({**settings, "restarts": len(deaths)}, options, errors)
        )
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    try:
        while True:
            stopped = wait([process.sentinel for process in processes])
            if not errors.empty():
                raise DigitsError(errors.get())
            for process in [p for p in processes if p.sentinel in stopped]:
                process.join()
                processes.remove(process)
                deaths.append(time.monotonic())
                print(
                    f"digits serve: worker {process.pid} stopped (exit code {process.exitcode}); starting"
                    f" another ({len(deaths)} replaced so far)",
                    file=sys.stderr,
                    flush=True,
                )
                if sum(t > time.monotonic() - 60 for t in deaths) > MAX_RESTARTS_PER_MINUTE:
                    raise DigitsError(
                        f"server workers stopped {len(deaths)} times, more than {MAX_RESTARTS_PER_MINUTE}"
                        " in a minute; see their messages above"
                    )
                processes.append(start())
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the workers too; they shut down on their own
    finally:
        _stop(processes)


def _stop(processes) -> None:
    """SIGTERM every worker at once, then SIGKILL whatever is left when ``SHUTDOWN_SECONDS`` are up."""
    import time

    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _reuse_port_worker(settings: dict, options: dict, errors) -> None:
    import uvicorn

    try:
        app = _app_from_settings(settings)
    except (DigitsError, FileNotFoundError, ValueError) as exc:  # for the parent to report, not a traceback
        errors.put(str(exc))
        sys.exit(2)
    host, port = options["host"], options["port"]
    sock = _socket_for(host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    raise_file_limit()
    server = uvicorn.Server(uvicorn.Config(app, **options))
    _stop_with_the_parent(server)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass


def _stop_with_the_parent(server) -> None:
    """Shut the worker down if its parent dies without stopping it (SIGKILL, an out-of-memory kill):
    orphaned workers would go on serving the port, unsupervised, for good."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while not server.should_exit:
            time.sleep(1)
            if os.getppid() != parent:
                server.should_exit = True

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
