"""``collector.ccxt.exchanges.<id>.transport``: WebSocket where ccxt pro watches every asked
channel, REST polling otherwise, and settings that cannot be served refused in one line."""

from __future__ import annotations

import pytest

from collectors import ccxt_ws
from collectors.ccxt_poller import CcxtExchangeSettings, CcxtSettings
from streams.settings import SettingsError, section


def _cfg(**kw: object) -> CcxtExchangeSettings:
    return CcxtExchangeSettings(**{"symbols": ["BTC/USDT"], **kw})  # type: ignore[arg-type]


def test_auto_picks_websocket_where_ccxt_pro_watches_and_rest_elsewhere() -> None:
    assert ccxt_ws.choose("bitget", _cfg(channels=["trades", "ticker", "book"])) == "ws"
    assert ccxt_ws.choose("bitget", _cfg(transport="rest")) == "rest"
    # ccxt has no pro class for these: polled (ohlcv alone needs no stream either)
    assert ccxt_ws.choose("bitbank", _cfg(channels=["trades", "ticker"])) == "rest"
    assert ccxt_ws.choose("bitget", _cfg(channels=["ohlcv"])) == "rest"
    with pytest.raises(SystemExit, match="book needs"):
        ccxt_ws.choose("bitbank", _cfg(channels=["trades", "book"]))
    with pytest.raises(SystemExit, match="cannot watch"):
        ccxt_ws.choose("bitbank", _cfg(transport="ws"))


def test_websocket_urls_replaced_rest_urls_apart() -> None:
    cfg = _cfg(api_url="http://127.0.0.1:1", ws_url="ws://127.0.0.1:2/x")
    ex = ccxt_ws.make_ws_exchange("bitget", cfg)
    api = ex.urls["api"]
    assert api["spot"] == "http://127.0.0.1:1"
    assert set(api["ws"].values()) == {"ws://127.0.0.1:2/x"}


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"transport": "wss"}, "transport must be one of auto, ws, rest"),
        ({"transport": "rest", "channels": ["book"]}, "book needs transport ws or auto"),
        ({"channels": ["depth"]}, "some of trades, ticker, ohlcv, book"),
    ],
)
def test_bad_transport_settings_fail_in_one_line(over: dict[str, object], why: str) -> None:
    data = {"exchanges": {"bitget": {"symbols": ["BTC/USDT"], **over}}}
    with pytest.raises(SettingsError, match=why):
        section(data, CcxtSettings, "collector.ccxt")
