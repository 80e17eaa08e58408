"""``python -m normalizer``: RAW -> MARKET."""

from normalizer.worker import main
from streams.bus.runtime import run

if __name__ == "__main__":
    run("normalizer", main)
