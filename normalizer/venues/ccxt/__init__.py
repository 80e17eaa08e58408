"""The long tail: frames of collectors/ccxt_poller.py and collectors/backfill.py for any ccxt
exchange id. No ``PARSERS`` list: the registry creates a ``CcxtParser`` per venue token that
has no native parser (see normalizer/registry.py)."""

from normalizer.venues.ccxt.parse import CcxtParser, is_ccxt_channel

__all__ = ["CcxtParser", "is_ccxt_channel"]
