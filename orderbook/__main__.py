"""``python -m orderbook``: validated L2 books, depth/BBO, ``book.get``."""

from orderbook.service import main
from streams.bus.runtime import run

if __name__ == "__main__":
    run("orderbook", main)
