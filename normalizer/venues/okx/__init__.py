from normalizer.venues.okx.parse import OkxParser

PARSERS = [OkxParser]
__all__ = ["PARSERS", "OkxParser"]
