"""Shared fixtures: a real nats-server on free loopback ports with a temp store, and
settings pointing every component at it and at a temp chdb path.

Auth is on as in `make up` (infra/nats/nats-server.conf, streams/bus/auth.py): one set of
generated credentials for the whole session (``CREDENTIALS``, also the default of every
NatsServer a test starts), the streams provisioned as admin when the server starts,
workers connecting as their own role, and any other client (``"test"``, ``"check"`` ...)
as admin (``nats.default_role``), so tests can still inspect and arrange anything."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from streams import settings as settings_mod
from streams.bus import auth as natsauth
from streams.bus import server as natsserver
from streams.bus.connect import connect
from streams.bus.server import NatsServer, free_port
from streams.provision import provision
from streams.settings import MetricsSettings, NatsServerSettings, Settings, TtlDays

SHARED_FRAMES = Path(__file__).resolve().parents[2] / "shared" / "frames"

CREDENTIALS = Path(tempfile.mkdtemp(prefix="jm-test-creds-"))
atexit.register(shutil.rmtree, CREDENTIALS, True)
natsserver.DEFAULT_CREDENTIALS_DIR = str(CREDENTIALS)
# bcrypt's lowest cost: the same code path, and connects do not pay ~0.1 s each in tests
natsauth.BCRYPT_COST = 4


def shared_frames(name: str) -> Path:
    """Path of a recorded frames file, or skip the test saying what is missing."""
    p = Path(os.environ.get("JETMARKET_SHARED_FRAMES", SHARED_FRAMES)) / name
    if not p.exists():
        pytest.skip(f"recorded frames {p} absent (../shared/frames not beside the repo)")
    return p


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    cfg = NatsServerSettings(
        port=free_port(), monitor_port=free_port(), store_dir=str(tmp_path / "nats")
    )
    srv = NatsServer(cfg, log_file=tmp_path / "nats.log").start()
    asyncio.run(_provision_as_admin(srv.url))  # as `make up` does before any worker starts
    yield srv
    srv.stop()


async def _provision_as_admin(url: str) -> None:
    s = settings_mod.from_mapping({"nats": {"url": url, "credentials_dir": str(CREDENTIALS)}})
    nc = await connect(s.nats, "provision", role="admin")
    try:
        await provision(nc.jetstream(timeout=10.0), s)
    finally:
        await nc.close()


NO_TTL = dict.fromkeys(TtlDays.__struct_fields__, 0)


def budget_units_spent(venue: str) -> float:
    """REST weight this process took from ``venue``'s shared budget so far (the
    ``jetmarket_budget_units_total`` counter over all rules and priorities)."""
    from prometheus_client import REGISTRY

    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "jetmarket_budget_units"
        for s in m.samples
        if s.name == "jetmarket_budget_units_total" and s.labels.get("venue") == venue
    )


def make_settings(tmp_path: Path, nats_url: str, **overrides: Any) -> Settings:
    """Settings for a test: temp chdb path, metrics endpoints off, then any overrides
    given as a nested dict, e.g. ``collector={"binance": {"ws_url": ...}}``."""
    base: dict[str, Any] = {
        "nats": {"url": nats_url, "credentials_dir": str(CREDENTIALS), "default_role": "admin"},
        # no table TTL: tests store messages stamped in 2023-2025, which a TTL would expire
        "clickhouse": {"dsn": f"chdb://{tmp_path / 'clickhouse'}", "ttl_days": NO_TTL},
        # 0 disables a worker's endpoint (an empty dict would merge with the defaults and
        # have every test worker fight over ports 9101-9105)
        "metrics": {"ports": dict.fromkeys(MetricsSettings().ports, 0), "health_interval_s": 5.0},
    }
    return settings_mod.from_mapping(settings_mod._merge(base, overrides))


@pytest.fixture
def settings(tmp_path: Path, nats_server: NatsServer) -> Settings:
    return make_settings(tmp_path, nats_server.url)


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[Client]:
    client = await connect(settings.nats, "test")
    yield client
    await client.close()


@pytest.fixture
async def js(nc: Client, settings: Settings) -> JetStreamContext:
    ctx = nc.jetstream(timeout=10.0)
    await provision(ctx, settings)
    return ctx
