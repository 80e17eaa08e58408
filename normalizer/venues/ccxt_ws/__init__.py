"""The long tail live: frames of collectors/ccxt_ws.py (any ccxt pro exchange id) turned
into typed messages by ccxt's own WebSocket handlers. No ``PARSERS`` list: the ccxt parser
of a venue (normalizer/venues/ccxt) hands its ``ccxt-ws*`` channels to a
``CcxtWsParser`` of that venue."""

from normalizer.venues.ccxt_ws.parse import CcxtWsParser, is_ws_channel

__all__ = ["CcxtWsParser", "is_ws_channel"]
