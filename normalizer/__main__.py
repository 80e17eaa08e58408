"""``python -m normalizer``: RAW -> MARKET (exchange frames into typed messages).

Reads raw.<venue>.<channel>.<NATIVE> from the RAW stream through the durable consumer
normalizer.durable, publishes market.<type>.<venue>.<symbol> to MARKET, bad frames to
dlq.normalizer. Settings: [normalizer] (partitions, batch sizes)."""

from normalizer.worker import main
from streams.bus.runtime import parse_args, run

if __name__ == "__main__":
    parse_args("normalizer", __doc__)
    run("normalizer", main)
