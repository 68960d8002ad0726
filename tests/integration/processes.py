"""Long-running processes for the integration tests: each in its own process group, logged to a file,
stopped by its group at the end even when the test fails."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import requests

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to the process group, SIGKILL after ``timeout`` s (code servers can ignore SIGTERM)."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group (run workers, code servers)
    process.wait(timeout)


@contextmanager
def running(
    name: str, command: Sequence[str], env: Mapping[str, str], log_dir: Path
) -> Iterator[subprocess.Popen]:
    """``command`` in a new session (its own process group), output in ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            list(command), env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop(process)


def wait_until(predicate: Callable[[], T], what: str, timeout: float, interval: float = 2.0) -> T:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_webserver(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    """Until ``url/server_info`` answers; fail early if the process died."""

    def answers() -> bool:
        assert process.poll() is None, f"the webserver exited with {process.returncode}"
        try:
            return requests.get(f"{url}/server_info", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, f"{url}/server_info", timeout)


def log_tails(log_dir: Path, lines: int = 40) -> str:
    """The last lines of every log in ``log_dir``, for failure messages."""
    parts = []
    for path in sorted(log_dir.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {path.name}\n" + "\n".join(tail))
    return "\n".join(parts)
