"""What every worker shares: uvloop, signals, NATS, stream checks, metrics, health lines.

A worker is ``async def main(w: Worker) -> None`` that loops until ``w.stop`` is set,
then flushes and acks what is durable and returns. ``run()`` does the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Gauge, start_http_server

from streams import subjects
from streams.bus import auth as natsauth
from streams.bus import logs
from streams.bus.connect import connect, role_of
from streams.bus.secrets import SecretsError
from streams.settings import Settings, SettingsError
from streams.settings import load as load_settings

log = logging.getLogger("streams.bus.runtime")

UP = Gauge("jetmarket_worker_up", "1 while the worker runs, 0 once it stops", ["worker"])
HEALTHY = Gauge("jetmarket_worker_healthy", "1 when the worker reports itself healthy", ["worker"])


# Net allocations between the cyclic GC's young-generation collections in a worker's own
# process (``collect_young_every``), instead of Python's default 700.
GC_YOUNG = 50_000


def collect_young_every(allocations: int = GC_YOUNG) -> None:
    """Set the young-generation GC threshold of this process (the older generations keep
    theirs). The workers' hot paths make no reference cycles (their objects die by
    refcount), but they hold thousands of messages per batch, and at the default of 700
    each batch set off hundreds of collections walking them: measured with gc.callbacks
    on 200k messages, 0.38-0.54 us of GC per frame in the normalizer (5-6% of it) and
    5.5-6.2 us per trade in the sink (MARKET + RAW rows); at 50k, none and ~1.1 us (a few
    full collections). Only for a process of its own: tests and tools keep Python's."""
    gc.set_threshold(allocations, *gc.get_threshold()[1:])


class Health:
    """A worker's self-report: a state word plus a few numbers, printed as one JSON line."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.state = "starting"
        self.fields: dict[str, Any] = {}
        self._changed = asyncio.Event()

    def set(self, state: str | None = None, **fields: Any) -> None:
        if state is not None and state != self.state:
            self.state = state
            self._changed.set()
        self.fields.update(fields)
        HEALTHY.labels(self.worker).set(1 if self.state in ("ok", "idle") else 0)

    def line(self) -> dict[str, Any]:
        return {"worker": self.worker, "state": self.state, **self.fields}


class Worker:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.stop = asyncio.Event()
        self.health = Health(name)
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; returns True when stopping."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True


async def _health_loop(w: Worker, interval: float) -> None:
    last = 0.0
    while not w.stop.is_set():
        changed = w.health._changed.is_set()
        # on a terminal only changes: the periodic repeat is for log collectors (JSON)
        due = time.monotonic() - last >= interval and not logs.HUMAN
        if changed or due:
            w.health._changed.clear()
            log.info("health", extra=w.health.line())
            last = time.monotonic()
        try:
            await asyncio.wait_for(w.health._changed.wait(), 1.0)
        except TimeoutError:
            pass


async def wait_streams(w: Worker, streams: tuple[str, ...], every_s: float = 1.0) -> None:
    """Until each of ``streams`` exists (STREAM.INFO): workers may not create streams, the
    admin identity provisions them (`make up` before it starts any worker)."""
    assert w.js is not None
    said = 0.0
    for name in streams:
        while not w.stop.is_set():
            try:
                await w.js.stream_info(name)
                break
            except NotFoundError:
                why = f"stream {name} missing: run `jetmarket provision` (make up does)"
            except Exception as exc:  # timeout, permissions: say so, keep waiting
                why = f"stream {name}: {exc!r}"
            w.health.set("waiting", waiting_for=why)
            if time.monotonic() - said > 30:
                log.warning("waiting for a stream", extra={"worker": w.name, "reason": why})
                said = time.monotonic()
            await w.sleep(every_s)
    w.health.fields.pop("waiting_for", None)


async def start_worker(w: Worker, *, need_nats: bool = True) -> None:
    if need_nats:
        w.nc = await connect(w.settings.nats, w.name)
        w.js = w.nc.jetstream(timeout=10.0)
        role = role_of(w.settings.nats, w.name) if not w.settings.nats.user else ""
        await wait_streams(w, natsauth.STREAMS.get(role, ()))

        async def status(msg: Msg) -> None:
            line = {**w.health.line(), "pid": os.getpid(), "ts": time.time_ns()}
            await msg.respond(orjson.dumps(line, default=str))

        await w.nc.subscribe(subjects.STATUS_QUERY, cb=status)


# After a stop signal a worker has this long to flush and ack; then it is cancelled (a
# body blocked on a dead server must not keep the process alive). A second signal cancels
# at once.
STOP_GRACE_S = 20.0


async def _main(name: str, body: Callable[[Worker], Awaitable[None]], settings: Settings) -> None:
    w = Worker(name, settings)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def on_signal() -> None:
        if w.stop.is_set():
            main.cancel()
            return
        w.stop.set()
        loop.call_later(STOP_GRACE_S, main.cancel)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    UP.labels(name).set(1)
    health = asyncio.create_task(_health_loop(w, settings.metrics.health_interval_s))
    try:
        # the first connection retries forever while NATS is down and does not look at
        # w.stop: race it against the stop signal so a signal ends the worker at any time
        starting = asyncio.create_task(start_worker(w))
        stopped = asyncio.create_task(w.stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        else:
            starting.result()
            await body(w)
    finally:
        w.stop.set()
        UP.labels(name).set(0)
        health.cancel()
        await _close(w.nc)
        log.info("stopped", extra={"worker": name})


async def _close(nc: Client | None) -> None:
    """Drain when connected (flushes what is pending); a client still reconnecting to a
    dead server is closed instead, which would wait for nothing."""
    if nc is None or nc.is_closed:
        return
    try:
        if nc.is_connected:
            await asyncio.wait_for(nc.drain(), 10)
        else:
            await asyncio.wait_for(nc.close(), 2)
    except Exception:  # already closed or server gone: nothing left to flush
        pass


def load_or_exit(prog: str) -> Settings:
    """The settings of a worker process, or exit 2 after one line naming the bad key (no
    traceback: `make normalizer` with a bad value reads like `jetmarket`)."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"{prog}: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_args(prog: str, doc: str | None, argv: list[str] | None = None,
               add: Callable[[argparse.ArgumentParser], None] | None = None,
               ) -> argparse.Namespace:  # fmt: skip
    """A worker's command line: ``--help`` prints what it does and which settings it reads
    (instead of starting it); ``add`` declares its own arguments."""
    first, _, rest = (doc or prog).strip().partition("\n")
    p = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=first,
        epilog=(rest.strip() + "\n\n" if rest.strip() else "") + WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if add is not None:
        add(p)
    return p.parse_args(argv)


WORKER_EPILOG = """\
settings: ./jetmarket.toml or $JETMARKET_CONFIG, then JETMARKET_<SECTION>__<KEY> environment
variables (see jetmarket.example.toml; `jetmarket config` prints the effective values).
Stops cleanly on SIGINT/SIGTERM (a second signal stops at once). Usually started by `make up`."""


def run(
    name: str, body: Callable[[Worker], Awaitable[None]], settings: Settings | None = None
) -> None:
    """Entry point of every worker process."""
    settings = settings or load_or_exit(name)
    logs.PROCESS = name.split(":")[0]
    logs.setup(settings.log.level, logs.settings_format(settings))
    port = settings.metrics.ports.get(name.split(":")[0], 0)
    if port:
        try:
            start_http_server(port, addr=settings.metrics.host)
        except OSError as exc:
            log.warning(
                "metrics port busy, endpoint disabled", extra={"port": port, "error": str(exc)}
            )
    try:
        import uvloop

        uvloop.run(_main(name, body, settings))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass  # stopped by a signal: the "stopped" line was logged, no traceback
    except SettingsError as exc:  # a section read at start (a venue's, an account's)
        print(f"{name}: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (natsauth.CredentialsError, SecretsError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
