"""The long tail live: frames of collectors/ccxt_ws.py (any ccxt pro exchange id) turned
into typed messages by ccxt's own WebSocket handlers. No ``PARSERS`` list: the ccxt parser
of a venue (normalizer/venues/ccxt) hands its ``ccxt-ws*`` channels to a
``CcxtWsParser`` of that venue.

Nothing is imported here: the registry imports every venue package at start, and ccxt pro
costs ~0.7 s of CPU and ~40 MB, paid only by a normalizer that meets a long-tail frame
(``from normalizer.venues.ccxt_ws.parse import CcxtWsParser``)."""
