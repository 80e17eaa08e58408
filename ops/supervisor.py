"""``jetmarket up``: the embedded nats-server plus every worker, supervised by one command.

Workers run as child processes in their own sessions so a terminal Ctrl-C reaches only
the supervisor, which then stops them in order: workers first (each flushes and acks
what is durable), nats-server last. A worker that dies is restarted with backoff.

Auth: the embedded server starts with generated credentials (streams/bus/auth.py, under
``nats.credentials_dir``); the supervisor provisions streams as ``admin`` before any worker
starts, and each worker connects as its own role, which cannot create or change streams.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from streams.bus.server import NatsServer
from streams.settings import Settings

log = logging.getLogger("ops.supervisor")

PID_FILE = Path("var/up.pid")


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = field(default=1.0)


def default_workers(settings: Settings, venues: list[str] | None = None) -> list[Child]:
    py = sys.executable
    return [
        Child("collector", [py, "-m", "collectors", *(venues or settings.collector.venues)]),
        Child("normalizer", [py, "-m", "normalizer"]),
        Child("sink", [py, "-m", "sinks", "clickhouse"]),
        Child("orderbook", [py, "-m", "orderbook"]),
        Child("executor", [py, "-m", "executor"]),  # paper account unless configured
    ]


class Supervisor:
    def __init__(
        self, settings: Settings, children: list[Child], *, embedded_nats: bool = True
    ) -> None:
        self.settings = settings
        self.children = children
        self.embedded_nats = embedded_nats
        self.nats: NatsServer | None = None
        self.stopping = False
        self.env = dict(os.environ)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def start_nats(self) -> None:
        srv = self.settings.nats.server
        creds = self.settings.nats.credentials_dir
        self.nats = NatsServer(srv, log_file=Path(srv.store_dir).parent / "nats-server.log",
                               credentials_dir=creds, settings=self.settings)  # fmt: skip
        self.nats.start()
        self.env["JETMARKET_NATS__URL"] = self.nats.url
        log.info("nats-server up", extra={"url": self.nats.url, "store": srv.store_dir,
                                          "credentials": creds})  # fmt: skip

    def provision(self) -> None:
        """Streams and buckets, as admin, before any worker starts (workers only check)."""
        from streams.bus.connect import connect
        from streams.provision import provision

        nats = self.settings.nats
        if nats.credentials_dir:  # workers started from elsewhere find the same files
            creds = str(Path(nats.credentials_dir).resolve())
            self.env["JETMARKET_NATS__CREDENTIALS_DIR"] = creds
            nats = msgspec.structs.replace(nats, credentials_dir=creds)
        if self.nats is not None:
            nats = msgspec.structs.replace(nats, url=self.nats.url)

        async def run() -> list[str]:
            nc = await connect(nats, "provision", role="admin", max_reconnect_attempts=0)
            try:
                return await provision(nc.jetstream(timeout=10.0), self.settings)
            finally:
                await nc.close()

        try:
            report = asyncio.run(run())
        except Exception as exc:  # no admin credentials, server unreachable, bad limits
            log.error("cannot provision the streams as admin", extra={"error": str(exc)})
            raise SystemExit(1) from None
        log.info("streams provisioned (admin)", extra={"streams": report})

    def _spawn(self, c: Child) -> None:
        c.proc = subprocess.Popen(c.argv, env=self.env, start_new_session=True)
        c.started = time.monotonic()
        log.info("worker started", extra={"worker": c.name, "pid": c.proc.pid})

    def _check(self, c: Child) -> None:
        now = time.monotonic()
        if c.proc is not None and c.proc.poll() is None:
            if now - c.started > 60:
                c.backoff = 1.0  # ran long enough: the next crash starts from a short wait
            return
        if c.proc is not None:
            code = c.proc.returncode
            c.proc = None
            c.restarts += 1
            c.next_start = now + c.backoff
            log.warning(
                "worker exited, restarting",
                extra={"worker": c.name, "code": code, "restart_in_s": c.backoff},
            )
            c.backoff = min(c.backoff * 2, 30.0)
        if now >= c.next_start:
            self._spawn(c)

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        PID_FILE.parent.mkdir(parents=True, exist_ok=True)
        PID_FILE.write_text(str(os.getpid()))
        try:
            if self.embedded_nats:
                self.start_nats()
            self.provision()
            for c in self.children:
                self._spawn(c)
            while not self.stopping:
                for c in self.children:
                    self._check(c)
                if self.nats and self.nats.proc and self.nats.proc.poll() is not None:
                    log.error("nats-server exited; restarting it")
                    self.nats.start()
                time.sleep(0.2)
        finally:
            self.shutdown()
            PID_FILE.unlink(missing_ok=True)
        return 0

    def shutdown(self, timeout: float = 30.0) -> None:
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for c in live:
            c.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        for c in live:
            assert c.proc is not None
            try:
                code = c.proc.wait(max(0.1, deadline - time.monotonic()))
                log.info("worker stopped", extra={"worker": c.name, "code": code})
            except subprocess.TimeoutExpired:
                c.proc.kill()
                log.error("worker did not stop in time, killed", extra={"worker": c.name})
        if self.nats is not None:
            self.nats.stop()
            log.info("nats-server stopped")


def down(timeout: float = 60.0) -> int:
    """Stop a running ``jetmarket up`` (what ``make down`` calls)."""
    if not PID_FILE.exists():
        print("jetmarket is not running (no var/up.pid)")
        return 0
    pid = int(PID_FILE.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        PID_FILE.unlink(missing_ok=True)
        print("jetmarket was not running (stale pid file removed)")
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("jetmarket stopped")
            return 0
        time.sleep(0.2)
    print(f"jetmarket (pid {pid}) still running after {timeout}s")
    return 1
