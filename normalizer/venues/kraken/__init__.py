from normalizer.venues.kraken.parse import KrakenParser

PARSERS = [KrakenParser]
__all__ = ["PARSERS", "KrakenParser"]
