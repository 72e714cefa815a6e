"""Run ``dfdetect serve`` as a child process on this machine's loopback, for scripts and tests.

    with LocalServer(["--model", "model.pt"]) as url:
        urllib.request.urlopen(url + "/health")

The server listens on 127.0.0.1 only, on a free port, and is always stopped
(SIGINT, then SIGKILL if it lingers) when the block ends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import IO, Sequence
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def require_loopback(url: str) -> str:
    """``url`` without a trailing slash if its host is a loopback address; ValueError otherwise."""
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{url}: only loopback addresses (127.0.0.1, ::1, localhost) are allowed")
    return url.rstrip("/")


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll ``url``/health until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.25)
    raise TimeoutError(f"server at {url} not ready after {timeout:.0f} s")


class LocalServer(contextlib.AbstractContextManager):
    """``python -m deepfake_cli serve ARGS --host 127.0.0.1 --port FREE``; ``with`` gives its URL."""

    def __init__(
        self,
        args: Sequence[str] = (),
        start_timeout: float = 180.0,
        stdout: int | IO | None = subprocess.DEVNULL,
        stderr: int | IO | None = None,
    ):
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.command = [sys.executable, "-m", "deepfake_cli", "serve", *args, "--host", LOOPBACK, "--port", str(self.port)]
        self.start_timeout = start_timeout
        self._stdout, self._stderr = stdout, stderr
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(self.command, stdout=self._stdout, stderr=self._stderr)
        try:
            wait_ready(self.url, self.proc, self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT (uvicorn's graceful shutdown), then SIGKILL after ``timeout``; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        return self.returncode

    def __exit__(self, *exc) -> None:
        self.stop()
