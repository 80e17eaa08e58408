from normalizer.venues.binance.parse import BinanceSpotParser

__all__ = ["BinanceSpotParser"]
