"""``jetmarket``: one front door for every component.

Components are started as ``python -m <component>`` (never imported here): streams/
stays free of dependencies on the components, which meet only on subjects.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from streams.bus import logs
from streams.bus.auth import CredentialsError
from streams.bus.connect import NatsUnreachable
from streams.bus.secrets import SecretsError
from streams.settings import Settings, SettingsError

log = logging.getLogger("jetmarket")

# one worker in the foreground: the subcommand is the make target's name; the older verbs
# (collect, normalize, exec) stay as aliases
WORKERS = {
    "collector": ["collectors"],
    "normalizer": ["normalizer"],
    "sink": ["sinks", "clickhouse"],
    "orderbook": ["orderbook"],
    "executor": ["executor"],
    "api": ["api"],  # also `jetmarket api keys add/list/revoke`
}
ALIASES = {"collector": ["collect"], "normalizer": ["normalize"], "executor": ["exec"]}
CANONICAL = {a: name for name, aliases in ALIASES.items() for a in aliases}

UP_HELP = """\
Starts, in this order, and supervises (a worker that dies is restarted with backoff):
  nats-server   embedded, JetStream store in nats.server.store_dir (./var/nats), generated
                credentials in nats.credentials_dir; streams provisioned as admin
  emulator      (--emulator only) the local Binance exchange emulator, trading BTCUSDT and
                ETHUSDT; the collector is pointed at it: everything works offline
  collector     the venues of --venues or collector.venues (default binance)
  normalizer    RAW -> MARKET
  sink          MARKET, RAW, EXEC -> ClickHouse (clickhouse.dsn, ./var/clickhouse); answers sql
  orderbook     validated books, depth/BBO, book.get (`jetmarket book`)
  executor      order commands (account "paper" unless executor.accounts says otherwise)
  api           HTTP/WebSocket API and live console on api.host:api.port (loopback only
                unless api.with_up = "always"; docs/api.md)
Ctrl-C (or `jetmarket down`) stops the workers first, then nats-server. One instance per
checkout: a second `up` refuses to start."""


def _exec_module(argv: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", *argv])
    return 0  # not reached


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jetmarket", description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", help="TOML settings file (default: $JETMARKET_CONFIG, ./jetmarket.toml)"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser(
        "up",
        help="the whole pipeline: nats-server, collector, normalizer, sink, orderbook, executor",
        description=UP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "--venues", nargs="+", metavar="VENUE",
        help="venues to collect, replacing collector.venues (e.g. --venues binance okx)",
    )  # fmt: skip
    up.add_argument(
        "--external-nats", action="store_true", help="use nats.url instead of starting one"
    )
    up.add_argument(
        "--emulator", action="store_true",
        help="collect from the local Binance emulator instead of the exchange (offline)",
    )  # fmt: skip
    sub.add_parser("down", help="stop a running `jetmarket up`")
    sub.add_parser("nats", help="run the embedded nats-server in the foreground")
    sub.add_parser("cluster", help="run a 3-node JetStream cluster on loopback (docs/scaling.md)")
    sub.add_parser("provision", help="create or update the JetStream streams")
    sub.add_parser("status", help="workers, consumer lag, freshness of raw data per channel")
    for name in WORKERS:
        # the worker's own parser answers --help and checks its arguments
        sub.add_parser(
            name, aliases=ALIASES.get(name, []), add_help=False,
            help=f"run one worker in the foreground: python -m {' '.join(WORKERS[name])} "
            "(--help for its options)",
        )  # fmt: skip
    sub.add_parser(
        "config", help="print the effective configuration and where each value comes from"
    ).add_argument(
        "--example", action="store_true",
        help="print a commented configuration file with every default instead",
    )  # fmt: skip
    book = sub.add_parser("book", help="print the live book the orderbook service holds")
    book.add_argument("venue", help="a collected venue, e.g. binance")
    book.add_argument("symbol", help="jetmarket symbol, e.g. BTC-USDT or BTC-USDT-PERP")
    book.add_argument("--levels", type=int, default=10, help="price levels per side (10)")
    # its options belong to collectors.backfill (parsed there, passed through as they are)
    sub.add_parser(
        "backfill", add_help=False,
        help="candles or trades history from a ccxt exchange into RAW (--help for options)",
    )  # fmt: skip
    # options belong to executor.backtest (streams/ must not import the executor)
    sub.add_parser(
        "backtest", add_help=False,
        help="run a strategy on the paper venue over replayed data (--help for options)",
    )  # fmt: skip
    sql = sub.add_parser("sql", help="run SQL on ClickHouse (through the sink when chdb)")
    sql.add_argument("query", help="one SELECT, e.g. 'SELECT count() FROM trades'")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="output format (table)")  # fmt: skip
    sql.add_argument("--max-rows", type=int, default=10_000, help="rows returned at most")
    sql.add_argument("--timeout", type=float, default=30.0, help="seconds the query may run")
    from replay import cli as replay_cli

    replay_cli.add_commands(sub)  # replay, record, renormalize
    from ops import backup

    for name, what in (("backup", "back up"), ("restore", "restore")):
        backup.add_arguments(
            sub.add_parser(
                name, help=f"{what} the ClickHouse tables and JetStream streams (backups/)"
            )
        )
    return p


PASS_THROUGH = ("backfill", "backtest", *WORKERS, *CANONICAL)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.cmd not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.cmd = CANONICAL.get(args.cmd, args.cmd)
    if args.config:
        os.environ["JETMARKET_CONFIG"] = args.config
    if args.cmd in WORKERS:  # the worker loads (and checks) the settings itself
        return _exec_module([*WORKERS[args.cmd], *extra])
    settings = logs.command_settings("jetmarket")
    if settings is None:
        return 2
    settings = _identity(settings, args)
    try:
        return _dispatch(settings, args, extra)
    except NatsUnreachable as exc:
        print(f"jetmarket {args.cmd}: {exc}", file=sys.stderr)
        return 1
    except (CredentialsError, SecretsError) as exc:
        print(f"jetmarket {args.cmd}: {exc}; start the pipeline with `make up` first (it "
              "writes the credentials), or set nats.credentials_dir", file=sys.stderr)  # fmt: skip
        return 1
    except SettingsError as exc:  # a section read later than load (a venue's, say)
        print(f"jetmarket {args.cmd}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # Ctrl-C: the user knows, no traceback


def _dispatch(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    if args.cmd == "config":
        from ops import config

        if args.example:
            sys.stdout.write(config.example())
        else:
            print(config.effective())
        return 0
    if args.cmd == "backfill":
        return _exec_module(["collectors.backfill", *extra])
    if args.cmd == "backtest":
        return _exec_module(["executor.backtest", *extra])
    if args.cmd == "up":
        from ops.supervisor import up

        return up(settings, args.venues, external_nats=args.external_nats, emulator=args.emulator)
    if args.cmd == "down":
        from ops.supervisor import down

        return down(settings)
    if args.cmd == "nats":
        return _run_nats(settings)
    if args.cmd == "cluster":
        return _run_cluster(settings)
    if args.cmd == "provision":
        return asyncio.run(_provision(settings))
    if args.cmd == "status":
        return asyncio.run(_status(settings))
    if args.cmd == "sql":
        return asyncio.run(_sql(settings, args))
    if args.cmd == "book":
        return asyncio.run(_book(settings, args.venue, args.symbol, args.levels))
    if args.cmd in ("backup", "restore"):
        from ops import backup

        return backup.run(args)
    if args.cmd in ("replay", "record", "renormalize", "export"):
        from replay import cli as replay_cli

        return replay_cli.run(settings, args)
    raise AssertionError(args.cmd)


# The NATS identity of each command that connects as a client (streams/bus/auth.py roles):
# reading commands as reader, status (consumer and stream state too) as operator, stream
# creation as admin. Workers started by a command connect as their own role.
COMMAND_ROLES = {
    "sql": "reader", "book": "reader", "status": "operator", "provision": "admin",
    "replay": "replay", "record": "replay", "renormalize": "admin",
}  # fmt: skip


def _identity(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with nats.role set for this command, unless the user chose one."""
    import msgspec

    role = COMMAND_ROLES.get(args.cmd)
    if args.cmd == "replay" and getattr(args, "stream", False):
        role = "admin"  # creates the REPLAY_<NAME> stream, which no other role may
    if not role or settings.nats.role or settings.nats.user:
        return settings
    return msgspec.structs.replace(settings, nats=msgspec.structs.replace(settings.nats, role=role))


def _run_nats(settings: Settings) -> int:
    import signal

    from streams.bus.server import NatsServer

    srv = NatsServer(settings.nats.server, credentials_dir=settings.nats.credentials_dir,
                     settings=settings)  # fmt: skip
    srv.websocket_port = settings.api.nats_ws_port  # browsers (api.nats_ws, docs/api.md)
    srv.start()
    print(f"nats-server listening on {srv.url}, store {settings.nats.server.store_dir}, "
          f"credentials in {settings.nats.credentials_dir}; `jetmarket provision` creates "
          "the streams")  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: srv.stop())
    try:
        assert srv.proc is not None
        return srv.proc.wait()
    except KeyboardInterrupt:
        srv.stop()
        return 0


def _run_cluster(settings: Settings) -> int:
    """Three nodes: client ports nats.server.port + 0..2, routes 6222.., monitors
    nats.server.monitor_port + 0..2, stores <store_dir>/cluster/n1..n3."""
    import signal
    import time
    from pathlib import Path

    from streams.bus.server import NatsCluster

    srv = settings.nats.server
    base = Path(srv.store_dir) / "cluster"
    cluster = NatsCluster(
        base,
        host=srv.host,
        client_ports=[srv.port + i for i in range(3)],
        cluster_ports=[6222 + i for i in range(3)],
        monitor_ports=[srv.monitor_port + i for i in range(3)],
        log_dir=base,
        credentials_dir=settings.nats.credentials_dir,
        settings=settings,
    )
    for i, node in enumerate(cluster.nodes):
        node.websocket_port = settings.api.nats_ws_port + i  # browsers (api.nats_ws)
    signal.signal(signal.SIGTERM, lambda *_: cluster.stop())
    try:
        cluster.start()
        print(f"3-node JetStream cluster up, logs in {base}; point workers at it with")
        print(f"  JETMARKET_NATS__URL={cluster.url}")
        print("  JETMARKET_STREAMS__RAW__REPLICAS=3 (and MARKET, EXEC, DLQ) for R3 streams")
        while all(n.proc is not None and n.proc.poll() is None for n in cluster.nodes):
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


async def _status(settings: Settings) -> int:
    from ops.status import status
    from streams.bus.connect import connect

    nc = await connect(settings.nats, "status", max_reconnect_attempts=0)
    try:
        print(await status(nc, settings))
    finally:
        await nc.close()
    return 0


async def _provision(settings: Settings) -> int:
    from streams.bus.connect import connect
    from streams.provision import provision

    nc = await connect(settings.nats, "provision", max_reconnect_attempts=0)
    try:
        for line in await provision(nc.jetstream(), settings):
            print(line)
    finally:
        await nc.close()
    return 0


async def _book(settings: Settings, venue: str, symbol: str, levels: int) -> int:
    import orjson

    from collectors.__main__ import venues
    from streams import subjects
    from streams.bus.connect import connect

    known = venues()
    if venue not in known and not venue.startswith("ccxt"):
        print(f"jetmarket book: unknown venue {venue!r}; known: {', '.join(known)}",
              file=sys.stderr)  # fmt: skip
        return 2
    nc = await connect(settings.nats, "book", max_reconnect_attempts=0)
    try:
        msg = await nc.request(subjects.book_get(venue, symbol), b"", timeout=2)
    except Exception:  # no responders, or no answer in time
        print("jetmarket book: no orderbook service answered; start the pipeline with "
              "`make up` (or `make orderbook`)", file=sys.stderr)  # fmt: skip
        return 1
    finally:
        await nc.close()
    book = orjson.loads(msg.data)
    if "error" in book:
        collected = venue in settings.collector.venues
        why = (
            "not synced yet (wait a few seconds) or not collected: check the symbol and "
            f"collector.{venue}.symbols; `make status` shows what flows"
            if collected
            else f"{venue} is not collected (collector.venues = {settings.collector.venues})"
        )
        print(f"jetmarket book: no book for {venue} {symbol}: {why}", file=sys.stderr)
        return 1
    state = "valid" if book["valid"] else "INVALID (resyncing)"
    print(f"{venue} {symbol}  seq {book['seq']}  {state}  "
          f"{len(book['bids'])} bids / {len(book['asks'])} asks")  # fmt: skip
    print(f"{'bid size':>16} {'bid':>14} | {'ask':<14} {'ask size':<16}")
    bids, asks = book["bids"][:levels], book["asks"][:levels]
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else ("", "")
        a = asks[i] if i < len(asks) else ("", "")
        print(f"{b[1]!s:>16} {b[0]!s:>14} | {a[0]!s:<14} {a[1]!s:<16}")
    return 0


async def _sql(settings: Settings, args: argparse.Namespace) -> int:
    from streams import sql

    try:
        if settings.clickhouse.dsn.startswith("chdb://"):
            from streams.bus.connect import connect

            nc = await connect(settings.nats, "sql", max_reconnect_attempts=0)
            try:
                result = await sql.query(
                    nc, args.query, timeout=args.timeout, max_rows=args.max_rows
                )
            finally:
                await nc.close()
        else:
            result = sql.query_direct(sql.query_dsn(settings), args.query, max_rows=args.max_rows)
    except sql.SqlError as exc:
        print(f"jetmarket sql: {exc}", file=sys.stderr)
        return 1
    formatter = {"table": sql.format_table, "csv": sql.format_csv, "json": sql.format_json}
    print(formatter[args.format](result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
