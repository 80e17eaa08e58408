"""``python -m sinks clickhouse``: MARKET (and RAW) -> ClickHouse."""

from __future__ import annotations

import sys

from streams.bus.runtime import run

SINKS = ("clickhouse",)


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else "clickhouse"
    if kind not in SINKS:
        raise SystemExit(f"unknown sink {kind!r}; available: {', '.join(SINKS)}")
    from sinks.clickhouse.worker import main as sink_main

    run("sink", sink_main)


if __name__ == "__main__":
    main(sys.argv[1:])
