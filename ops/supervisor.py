"""``jetmarket up``: the embedded nats-server plus every worker, supervised by one command.

Workers and nats-server run as child processes in their own sessions so a terminal
Ctrl-C reaches only the supervisor, which then stops them in order: workers first (each
flushes and acks what is durable), nats-server last. A worker that dies is restarted with
backoff; one that exits with code 2 (bad configuration) stops the whole start instead.
One instance per checkout: ``var/up.pid`` names the running one and a second refuses.

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

from streams.bus.server import NatsServer, websocket_conf
from streams.settings import Settings

log = logging.getLogger("ops.supervisor")


def orjson_list(items: list[str]) -> str:
    """A list as the JSON an environment override takes."""
    import orjson

    return orjson.dumps(items).decode()


PID_FILE = Path("var/up.pid")  # with the default store; see pid_file()


def pid_file(settings: Settings) -> Path:
    """``up.pid`` beside the instance's NATS store (``./var/up.pid`` by default): one
    instance per data directory, so `make demo` (var/demo) runs beside a `make up`."""
    return Path(settings.nats.server.store_dir).parent / "up.pid"


# a worker's exit code for "bad configuration or arguments": restarting cannot help
EXIT_CONFIG = 2


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = field(default=1.0)


def running(path: Path = PID_FILE) -> tuple[int, str] | None:
    """(pid, nats url) of the ``jetmarket up`` whose pid file is ``path``, if it runs."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    pid_s, _, url = text.partition(" ")
    try:
        pid = int(pid_s)
    except ValueError:
        return None
    return (pid, url) if _alive(pid) else None  # else stale: that process is gone


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, its parent has not reaped it yet) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def up(settings: Settings, venues: list[str] | None, *, external_nats: bool = False,
       emulator: bool = False) -> int:  # fmt: skip
    """``jetmarket up``: checks that cannot wait for a worker to fail, then the supervisor."""
    from collectors.__main__ import check_venues

    other = running(pid_file(settings))
    if other:
        print(f"jetmarket up: already running in this checkout (pid {other[0]}, NATS "
              f"{other[1] or '?'}); stop it with `make down` first", file=sys.stderr)  # fmt: skip
        return 1
    if emulator:
        venues = ["binance"]
    chosen = venues or settings.collector.venues
    bad = check_venues(chosen)
    if bad:
        print(f"jetmarket up: {bad} (--venues, VENUES= or collector.venues)", file=sys.stderr)
        return 2
    srv = settings.nats.server
    if not external_nats and not _port_free(srv.host, srv.port):
        print(f"jetmarket up: port {srv.host}:{srv.port} is taken (another checkout's "
              "`make up`, or a nats-server): stop it, or set nats.server.port and nats.url",
              file=sys.stderr)  # fmt: skip
        return 1
    ws = settings.api.nats_ws_port
    if (not external_nats and websocket_conf(settings, srv.host, ws).startswith("websocket")
            and not _port_free(srv.host, ws)):  # fmt: skip
        print(f"jetmarket up: port {srv.host}:{ws} (the NATS WebSocket listener) is taken: "
              "set api.nats_ws_port, or api.nats_ws = \"off\"", file=sys.stderr)  # fmt: skip
        return 1
    children = default_workers(settings, venues)
    sup = Supervisor(settings, children, embedded_nats=not external_nats)
    if emulator:
        sup.add_emulator()
    return sup.run()


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        # as nats-server's own listener: a closed connection in TIME_WAIT does not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def default_workers(settings: Settings, venues: list[str] | None = None) -> list[Child]:
    py = sys.executable
    return [
        Child("collector", [py, "-m", "collectors", *(venues or settings.collector.venues)]),
        Child("normalizer", [py, "-m", "normalizer"]),
        Child("sink", [py, "-m", "sinks", "clickhouse"]),
        Child("orderbook", [py, "-m", "orderbook"]),
        Child("executor", [py, "-m", "executor"]),  # paper account unless configured
        *_api(settings, py),
    ]


def _api(settings: Settings, py: str) -> list[Child]:
    """The API and console (api/): on by default where only this machine can reach it;
    off loopback only when asked (api.with_up = "always"), since it then faces a network."""
    api = settings.api
    loopback = api.host in ("127.0.0.1", "localhost", "::1") or api.host.startswith("127.")
    if api.with_up == "always" or (api.with_up == "loopback" and loopback):
        return [Child("api", [py, "-m", "api"])]
    return []


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

        self.emulator: Child | None = None
        self.failed = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def add_emulator(self, symbols: str = "BTCUSDT,ETHUSDT", rate: float = 20.0) -> None:
        """The local Binance emulator (tests/venues) as the first child, the collector's
        binance endpoints pointed at it: the whole pipeline with data and no network."""
        from streams.bus.server import free_port

        port = free_port()
        self.emulator = Child("emulator", [sys.executable, "-m", "tests.venues", "binance",
                                           "--port", str(port), "--symbols", symbols,
                                           "--rate", str(rate)])  # fmt: skip
        self.children.insert(0, self.emulator)
        self.env["JETMARKET_COLLECTOR__BINANCE__WS_URL"] = f"ws://127.0.0.1:{port}"
        self.env["JETMARKET_COLLECTOR__BINANCE__REST_URL"] = f"http://127.0.0.1:{port}"
        self.env["JETMARKET_COLLECTOR__BINANCE__SYMBOLS"] = orjson_list(symbols.split(","))

    def start_nats(self) -> None:
        srv = self.settings.nats.server
        creds = self.settings.nats.credentials_dir
        self.nats = NatsServer(srv, log_file=Path(srv.store_dir).parent / "nats-server.log",
                               credentials_dir=creds, settings=self.settings)  # fmt: skip
        self.nats.new_session = True  # Ctrl-C must not reach it: it stops last, after workers
        self.nats.websocket_port = self.settings.api.nats_ws_port  # browsers (api.nats_ws)
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
        out = subprocess.DEVNULL if c is self.emulator else None
        c.proc = subprocess.Popen(c.argv, env=self.env, start_new_session=True, stdout=out)
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
            if code == EXIT_CONFIG:
                # it said why in one line on stderr; restarting it would say it forever
                log.error("worker refused its configuration; stopping",
                          extra={"worker": c.name, "code": code})  # fmt: skip
                self.failed = self.stopping = True
                return
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
        pid_path = pid_file(self.settings)
        pid_path.parent.mkdir(parents=True, exist_ok=True)
        url = self.settings.nats.url
        if self.embedded_nats:
            srv = self.settings.nats.server
            url = f"nats://{srv.host}:{srv.port}"
        pid_path.write_text(f"{os.getpid()} {url}")
        try:
            if self.embedded_nats:
                self.start_nats()
            self.provision()
            for c in self.children:
                self._spawn(c)
            while not self.stopping:
                for c in self.children:
                    self._check(c)
                    if self.stopping:
                        break
                if self.nats and self.nats.proc and self.nats.proc.poll() is not None:
                    log.error("nats-server exited; restarting it")
                    self.nats.start()
                time.sleep(0.2)
        finally:
            self.shutdown()
            if running(pid_path) == (os.getpid(), url):  # ours only, never another's
                pid_path.unlink(missing_ok=True)
        return 1 if self.failed else 0

    def shutdown(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        # the workers first (each drains and acks), then the emulator they read from
        workers = [c for c in self.children if c is not self.emulator]
        for group in (workers, [self.emulator] if self.emulator else []):
            self._stop(group, deadline)
        if self.nats is not None:  # last: workers drained through it
            self.nats.stop()
            log.info("nats-server stopped")

    def _stop(self, children: list[Child], deadline: float) -> None:
        live = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for c in live:
            c.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for c in live:
            assert c.proc is not None
            try:
                code = c.proc.wait(max(0.1, deadline - time.monotonic()))
                log.info("worker stopped", extra={"worker": c.name, "code": code})
            except subprocess.TimeoutExpired:
                c.proc.kill()
                log.error("worker did not stop in time, killed", extra={"worker": c.name})


def down(settings: Settings | None = None, timeout: float = 60.0) -> int:
    """Stop a running ``jetmarket up`` (what ``make down`` calls)."""
    path = pid_file(settings) if settings is not None else PID_FILE
    found = running(path)
    if found is None:
        existed = path.exists()
        path.unlink(missing_ok=True)
        print("jetmarket was not running" + (f" (stale {path} removed)" if existed else ""))
        return 0
    pid = found[0]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        print("jetmarket was not running (stale pid file removed)")
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            print("jetmarket stopped")
            return 0
        time.sleep(0.2)
    print(f"jetmarket (pid {pid}) still running after {timeout}s")
    return 1
