"""infra/compose/docker-compose.yml checked where containers cannot run: it parses, every
worker runs a real jetmarket command, every file it mounts or reads exists (after
infra/compose/prepare.py), each worker mounts exactly its own NATS credentials, ports and host
names agree between the nodes, the routes and the clients, and the NATS node configuration
it builds is accepted by nats-server itself (`nats-server -t`)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from collectors.__main__ import venues
from ops.cli import _parser
from streams.bus.server import binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "compose" / "docker-compose.yml"
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*)|:\?[^}]*)?\}")


def expand(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} / ${VAR:?message} substitution, from ``env``."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", text)


def env_file(path: Path) -> dict[str, str]:
    """Compose env-file syntax as prepare.py writes it: KEY='literal' (no interpolation)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            if value.startswith("'") and value.endswith("'"):
                value = value[1:-1]
            out[key] = value
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compose")
    got = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "compose" / "prepare.py"), "--out", str(out)],
        cwd=out, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def cli_commands() -> set[str]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "jetmarket:latest"}


def nats_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s["image"].startswith("nats:")}


def test_every_worker_runs_a_jetmarket_command(compose: dict[str, Any]) -> None:
    known = cli_commands()
    ws = workers(compose)
    assert {"collector", "normalizer", "sink", "orderbook", "executor", "provision"} <= set(ws)
    for name, svc in ws.items():
        cmd = svc["command"]
        assert cmd[0] == "jetmarket" and cmd[1] in known, (name, cmd)
        if cmd[1] == "collector":
            assert set(cmd[2:]) <= set(venues()), cmd
    build = ws["sink"]["build"]
    dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile.is_file() and (dockerfile.parent / "Dockerfile.dockerignore").is_file()
    assert "pip install --no-cache-dir -e ." in dockerfile.read_text()


def test_every_mounted_file_exists(compose: dict[str, Any], generated: Path) -> None:
    env = {"JM_COMPOSE_DIR": str(generated)}
    named = set(compose["volumes"])
    for name, svc in compose["services"].items():
        if "env_file" in svc:
            assert (COMPOSE.parent / expand(svc["env_file"], env)).is_file(), name
        for vol in svc.get("volumes", []):
            src = expand(vol, env).split(":")[0]
            if src in named:
                continue
            assert (COMPOSE.parent / src).resolve().exists(), f"{name}: {src} missing"


def test_each_worker_mounts_only_its_own_credentials(compose: dict[str, Any]) -> None:
    for name, svc in workers(compose).items():
        role = svc["environment"].get("JETMARKET_NATS__ROLE", name)
        vols = [expand(v, {}).split(":") for v in svc["volumes"]]
        creds_dir = svc["environment"]["JETMARKET_NATS__CREDENTIALS_DIR"]
        assert [v[1] for v in vols] == [f"{creds_dir}/{role}"], (name, vols)
        assert all(v[0].endswith(f"/creds/{role}") for v in vols)
    # the admin password reaches the one-shot provisioning only
    admins = [n for n, s in workers(compose).items() if any("/admin:" in v for v in s["volumes"])]
    assert admins == ["provision"]


def test_ports_and_names_agree(compose: dict[str, Any], generated: Path) -> None:
    nodes = nats_nodes(compose)
    assert len(nodes) == 3
    client = {s["environment"]["JM_NATS_PORT"] for s in nodes.values()}
    cluster = {s["environment"]["JM_NATS_CLUSTER_PORT"] for s in nodes.values()}
    assert len(client) == len(cluster) == 1
    (client_port,), (cluster_port,) = client, cluster
    names = {s["environment"]["JM_NATS_NAME"] for s in nodes.values()}
    assert names == set(nodes)  # server names are the service (host) names
    for svc in nodes.values():  # the client port is what the host maps to
        assert all(p.split(":")[1] in (client_port, svc["environment"]["JM_NATS_MONITOR_PORT"])
                   for p in svc["ports"])  # fmt: skip
    host_ports = [p.split(":")[0] for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports
    # every worker reaches every node on the client port
    for svc in workers(compose).values():
        urls = [urlsplit(u) for u in svc["environment"]["JETMARKET_NATS__URL"].split(",")]
        assert {(u.hostname, str(u.port)) for u in urls} == {(n, client_port) for n in nodes}
    # the routes name the nodes on the cluster port
    routes = env_file(generated / "nats.env")
    urls = [urlsplit(routes[f"JM_NATS_ROUTE_{i}"].strip('"')) for i in (1, 2, 3)]
    assert {(u.hostname, str(u.port)) for u in urls} == {(n, cluster_port) for n in nodes}
    # the sink's DSN names the ClickHouse service, its HTTP port, the database it creates
    dsn = urlsplit(expand(workers(compose)["sink"]["environment"]["JETMARKET_CLICKHOUSE__DSN"],
                          {"JM_CLICKHOUSE_PASSWORD": "x"}))  # fmt: skip
    ch = compose["services"]["clickhouse"]
    assert dsn.hostname == "clickhouse" and f"{dsn.port}:{dsn.port}" in ch["ports"]
    assert dsn.path == "/" + ch["environment"]["CLICKHOUSE_DB"]
    assert dsn.username == ch["environment"]["CLICKHOUSE_USER"]


def test_nats_server_accepts_the_node_configuration(
    compose: dict[str, Any], generated: Path, tmp_path: Path
) -> None:
    """The config file, users.conf and websocket.conf as a node mounts them, with the node's
    environment and the route settings of nats.env: `nats-server -t` parses and checks it."""
    node = nats_nodes(compose)["nats-1"]
    etc = tmp_path / "etc"
    etc.mkdir()
    for vol in node["volumes"]:
        src, _, rest = expand(vol, {"JM_COMPOSE_DIR": str(generated)}).partition(":")
        target = rest.split(":")[0]
        if target.startswith("/etc/nats/"):
            shutil.copy(COMPOSE.parent / src, etc / Path(target).name)
    env = {**os.environ, **node["environment"], **env_file(generated / "nats.env"),
           "JM_NATS_STORE_DIR": str(tmp_path / "data")}  # fmt: skip
    conf = etc / Path(node["command"][1]).name
    got = subprocess.run([binary(), "-t", "-c", str(conf)], env=env, capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
