from normalizer.venues.coinbase.parse import CoinbaseParser

PARSERS = [CoinbaseParser]
__all__ = ["PARSERS", "CoinbaseParser"]
