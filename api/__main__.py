"""jetmarket api: the HTTP/WebSocket API and the live console (docs/api.md).

  python -m api                      serve on api.host:api.port (console at /console/)
  python -m api keys add NAME --scopes market,account,trade --account paper [--rate 20]
  python -m api keys list
  python -m api keys revoke ID
  python -m api openapi > docs/openapi.json    the schema (a test checks it is in sync)

Keys are kept hashed in api.keys_file (./var/api/keys.json, mode 0600); a running API sees
added and revoked keys at once. Scopes: market (market data, history), account (the key's
account: orders, positions; with market also SQL, which reads every table), trade (orders)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys

from api.keys import SCOPES, KeysError, KeyStore
from streams.bus.runtime import Worker, load_or_exit, parse_args, run

log = logging.getLogger("api")


async def serve(w: Worker) -> None:
    import uvicorn

    from api.app import Services, create_app
    from api.hub import Hub
    from api.live import Live

    assert w.nc is not None
    cfg = w.settings.api
    live = Live(w.nc)
    await live.start()
    svc = Services(w.nc, w.settings, live, Hub(w.nc))
    seeding = asyncio.create_task(
        live.seed_until_done(lambda q: svc.sql(q, 10_000, 10.0))
    )  # open orders and positions so far; the sink may still be starting
    app = create_app(svc, KeyStore(cfg.keys_file))

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def,override]
            yield  # the worker runtime owns SIGINT/SIGTERM (w.stop)

    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                            access_log=False, lifespan="off", ws_max_size=1 << 20)  # fmt: skip
    server = Server(config)
    # bound here, not by uvicorn: a taken port is one line and exit 1 (a supervisor
    # retries with backoff), not uvicorn's traceback
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        sock.close()
        print(f"jetmarket api: cannot listen on {cfg.host}:{cfg.port} ({exc.strerror}): "
              "another API runs there? set api.port", file=sys.stderr)  # fmt: skip
        seeding.cancel()
        await live.stop()
        raise SystemExit(1) from None
    sock.listen(128)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    w.health.set("ok", url=f"http://{cfg.host}:{cfg.port}/console/")
    url = f"http://{cfg.host}:{cfg.port}"
    log.info("api listening", extra={"url": url, "console": f"{url}/console/"})
    stopped = asyncio.create_task(w.stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 10)
    seeding.cancel()
    await live.stop()


def keys_cli(argv: list[str]) -> int:
    settings = load_or_exit("api")
    p = argparse.ArgumentParser(prog="jetmarket api keys", description="manage API keys")
    sub = p.add_subparsers(dest="op", required=True)
    add = sub.add_parser("add", help="create a key; prints it once (only its hash is kept)")
    add.add_argument("name", help="who or what uses it, e.g. notebook-alice")
    add.add_argument("--scopes", default="market",
                     help=f"comma-separated, of {','.join(SCOPES)} (market)")  # fmt: skip
    add.add_argument("--account", default="", help="executor account (account/trade scopes)")
    add.add_argument("--rate", type=float, default=None,
                     help="requests per second for this key (api.rate_per_s)")  # fmt: skip
    sub.add_parser("list", help="every key: id, name, scopes, account, revoked")
    rev = sub.add_parser("revoke", help="revoke a key by id (at once, also in a running API)")
    rev.add_argument("id")
    args = p.parse_args(argv)
    store = KeyStore(settings.api.keys_file)
    try:
        if args.op == "add":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            accounts = settings.executor.active_accounts()
            if args.account and args.account not in accounts:
                print(f"jetmarket api keys: account {args.account!r} is not in "
                      f"executor.accounts ({', '.join(accounts)})", file=sys.stderr)  # fmt: skip
                return 2
            key, token = store.add(args.name, scopes, args.account, args.rate)
            print(token)
            print(f"key {key.id} ({key.name}): scopes {','.join(key.scopes)}"
                  f"{' account ' + key.account if key.account else ''}; shown once, keep it",
                  file=sys.stderr)  # fmt: skip
        elif args.op == "list":
            for k in store.list():
                print(f"{k.id}  {k.name:<24} {','.join(k.scopes):<22} {k.account or '-':<10} "
                      f"{'REVOKED' if k.revoked else 'active'}")  # fmt: skip
        else:
            k = store.revoke(args.id)
            print(f"revoked {k.id} ({k.name})")
    except KeysError as exc:
        print(f"jetmarket api keys: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        raise SystemExit(keys_cli(argv[1:]))
    if argv[:1] == ["openapi"]:
        from api.schema import text

        sys.stdout.write(text())
        return
    parse_args("api", __doc__, argv)
    run("api", serve)


if __name__ == "__main__":
    main()
