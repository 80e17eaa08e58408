"""``jetmarket replay | record | renormalize``: argument parsing and the three commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from streams.settings import Settings

COMMANDS = ("replay", "record", "renormalize")


def _selection_args(p: argparse.ArgumentParser, default_subjects: str) -> None:
    p.add_argument(
        "--since",
        "--start",
        dest="since",
        help="start of the range: ISO-8601, epoch s/ns, or a duration ago (15m, 2h)",
    )
    p.add_argument("--until", "--end", dest="until", help="end of the range (exclusive)")
    p.add_argument(
        "--subjects",
        nargs="*",
        help=f"subject patterns (default {default_subjects}; a whole recording with --from-file)",
    )
    p.add_argument("--venues", nargs="*", help="venues (default: all)")
    p.add_argument("--symbols", nargs="*", help="symbols (native ones for raw subjects)")
    p.add_argument("--types", nargs="*", help="message types (channels for raw subjects)")
    p.add_argument("--source", choices=["auto", "jetstream", "clickhouse"], default="auto",
                   help="auto: JetStream within its retention, else ClickHouse")  # fmt: skip
    p.add_argument(
        "--clickhouse",
        choices=["auto", "sink", "direct"],
        default="auto",
        help="with a chdb DSN: ask the running sink, or open the path here",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_commands(sub: Any) -> None:
    from replay import export

    export.add_arguments(
        sub.add_parser("export", help="ClickHouse tables of a range to Parquet/CSV files")
    )
    r = sub.add_parser("replay", help="history back onto the bus (replay.<name>.>) or stdout")
    _selection_args(r, "market.>")
    r.add_argument("--start-seq", type=int, help="JetStream: start at this stream sequence")
    r.add_argument("--speed", default="max", help="max (default), 1x, 10x, 0.5x ...")
    r.add_argument("--name", help="republish under replay.<name>.<original subject>")
    r.add_argument(
        "--stream",
        action="store_true",
        help="with --name: keep the replay in stream REPLAY_<NAME> (acked)",
    )
    r.add_argument("--print", action="store_true", help="one JSON line per message to stdout")
    r.add_argument("--from-file", help="play a `jetmarket record` file (onto RAW unless --name)")
    r.add_argument("--from-replay", help="read replay.<name>.> (e.g. a renormalize output)")
    r.add_argument("--order", choices=["time", "stream"], default="time",
                   help="time: (ts_recv, stream, seq); stream: one stream's own order")  # fmt: skip
    rec = sub.add_parser("record", help="raw frames of a range into a compressed file")
    rec.add_argument("path", help="the file to write (.jmrec)")
    _selection_args(rec, "raw.>")
    rec.add_argument("--compression", choices=["auto", "zstd", "gzip"], default="auto",
                     help="auto: zstd when installed, else gzip")  # fmt: skip
    ren = sub.add_parser("renormalize", help="RAW through the normalizer into a fresh prefix")
    ren.add_argument("--since", required=True, help="start: ISO-8601, epoch s/ns or 2h")
    ren.add_argument("--until", help="end (exclusive), same forms")
    ren.add_argument("--prefix", help="replay name for the output (default renorm-<utc time>)")
    ren.add_argument("--venues", nargs="*", help="venues (default: all)")
    ren.add_argument("--source", choices=["auto", "jetstream", "clickhouse"], default="auto",
                     help="auto: JetStream within its retention, else ClickHouse")  # fmt: skip
    ren.add_argument("--compare", action="store_true", help="digest MARKET over the range too")
    ren.add_argument("--no-progress", action="store_true", help="no progress bar")


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "start": args.since,
        "end": args.until,
        "subjects": args.subjects,
        "venues": args.venues,
        "symbols": args.symbols,
        "types": args.types,
        "source": args.source,
        "clickhouse": args.clickhouse,
        "progress": False if args.no_progress else None,
    }


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from replay.api import Replay
    from replay.model import Digest

    extra = {"speed": args.speed, "start_seq": args.start_seq, "order": args.order}
    r = Replay(settings, **_common(args), **extra, from_file=args.from_file,
               from_replay=args.from_replay)  # fmt: skip
    digest = Digest()
    if args.name or args.from_file:
        # a recording goes back onto its original subjects unless a name is given
        stream = None
        if args.name and args.stream:
            from replay.output import ensure_stream
            from streams.bus.connect import connect

            nc = await connect(settings.nats, "replay", max_reconnect_attempts=0)
            try:
                stream = await ensure_stream(nc, args.name)
            finally:
                await nc.close()
        stats = await r.publish(args.name, stream=stream)
        where = f"replay.{args.name}.>" if args.name else "their original subjects"
        print(f"published {stats.messages} messages on {where} in {stats.seconds:.1f}s "
              f"({stats.rate:,.0f} msg/s) from {stats.source}", file=sys.stderr)  # fmt: skip
        return 0
    out = sys.stdout.buffer
    async for m in r:
        digest.update([m])
        if args.print:
            line = {"subject": m.subject, "seq": m.seq, "ts_recv": m.ts_recv}
            line["msg" if m.msg is not None else "data"] = (
                orjson.Fragment(m.data) if m.msg is not None else m.data.decode("utf-8", "replace")
            )
            out.write(orjson.dumps(line) + b"\n")
    s = r.stats
    print(f"{s.messages} messages in {s.seconds:.1f}s ({s.rate:,.0f} msg/s) from {s.source}; "
          f"late {s.late}, undecodable {s.bad}; sha256 {digest.hexdigest()}",
          file=sys.stderr)  # fmt: skip
    return 0


async def _record(settings: Settings, args: argparse.Namespace) -> int:
    from replay.api import Replay
    from replay.model import format_ns
    from replay.record import Writer

    kw = _common(args)
    args.subjects = kw["subjects"] = args.subjects or ["raw.>"]
    roots = {p.split(".")[0] for p in args.subjects}
    # RAW alone keeps its own order: what the normalizer saw, replayed the same way later
    r = Replay(settings, **kw, order="stream" if roots == {"raw"} else "time")
    with Writer(args.path, compression=args.compression, subjects=args.subjects,
                since=format_ns(r.start_ns), until=format_ns(r.end_ns)) as w:  # fmt: skip
        async for chunk in r.batches():
            w.write(chunk)
    print(f"recorded {w.count} messages from {r.stats.source} to {args.path} "
          f"({w.path.stat().st_size:,} bytes)", file=sys.stderr)  # fmt: skip
    return 0


async def _renormalize(settings: Settings, args: argparse.Namespace) -> int:
    from replay.renormalize import renormalize

    res = await renormalize(settings, since=args.since, until=args.until, name=args.prefix,
                            venues=args.venues, source=args.source, compare=args.compare,
                            progress=False if args.no_progress else None)  # fmt: skip
    print("\n".join(res.lines()))
    return 0 if not args.compare or res.identical else 1


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.cmd == "export":
        from replay import export

        return export.run(args, settings.clickhouse.dsn)
    fn = {"replay": _replay, "record": _record, "renormalize": _renormalize}[args.cmd]
    try:
        return asyncio.run(fn(settings, args))
    except (ValueError, RuntimeError) as exc:
        print(f"jetmarket {args.cmd}: {exc}", file=sys.stderr)
        return 2
