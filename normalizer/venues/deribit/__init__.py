from normalizer.venues.deribit.parse import DeribitParser

PARSERS = [DeribitParser]
__all__ = ["PARSERS", "DeribitParser"]
