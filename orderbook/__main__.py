"""``python -m orderbook``: validated L2 books, depth/BBO, ``book.get``.

Reads market.book.> and market.instrument.>, publishes market.depth/market.bbo/market.gap,
asks collectors for snapshots on ctl.snapshot.<venue>.<symbol> and answers
book.get.<venue>.<symbol> (`jetmarket book`). Settings: [orderbook]."""

from orderbook.service import main
from streams.bus.runtime import parse_args, run

if __name__ == "__main__":
    parse_args("orderbook", __doc__)
    run("orderbook", main)
