"""``python -m sinks clickhouse``: MARKET (and RAW, EXEC) -> ClickHouse.

The single writer of ClickHouse: stores market messages, raw frames (sink.store_raw) and
execution records effectively once, and answers sql.query (`jetmarket sql`) when the
engine is chdb. Settings: [clickhouse] dsn, [sink]."""

from __future__ import annotations

import sys

from streams.bus.runtime import parse_args, run

SINKS = ("clickhouse",)


def main(argv: list[str]) -> None:
    parse_args("sinks", __doc__, argv, lambda p: p.add_argument(
        "kind", nargs="?", default="clickhouse", choices=SINKS, help="the sink to run",
    ))  # fmt: skip
    from sinks.clickhouse.worker import main as sink_main

    run("sink", sink_main)


if __name__ == "__main__":
    main(sys.argv[1:])
