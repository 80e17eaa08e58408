"""Each venue's settings section: defined beside its collector, read and checked with the
contract's rules (defaults, env overrides, errors naming the dotted key)."""

from __future__ import annotations

import importlib

import pytest

from collectors.__main__ import main as collector_main  # noqa: F401  (the entry point imports)
from collectors.__main__ import venues
from collectors.base import Collector
from collectors.binance import BinanceSettings
from collectors.ccxt_poller import ccxt_settings
from collectors.config import VenueSettings, check_sections, venue_settings
from collectors.okx import OkxSettings
from streams import settings as S


def _collector_class(venue: str) -> type[Collector]:
    mod = importlib.import_module(f"collectors.{venue}")
    [cls] = {
        v for v in vars(mod).values()
        if isinstance(v, type) and issubclass(v, Collector) and getattr(v, "venue", "") == venue
    }  # fmt: skip
    return cls


@pytest.mark.parametrize("venue", venues())
def test_every_venue_defines_its_section_and_its_defaults_pass(venue: str) -> None:
    cls = _collector_class(venue)
    assert cls.settings_class is not VenueSettings, f"{venue}: no settings class of its own"
    cfg = venue_settings(S.Settings(), venue, cls.settings_class)
    assert cfg.symbols and cfg.channels and cfg.ws_url.startswith("wss://")


def test_section_defaults_env_and_file_merge(tmp_path) -> None:
    p = tmp_path / "jm.toml"
    p.write_text('[collector.okx]\nsymbols = ["ETH-USDT"]\n[collector.okx.reconnect]\nmin_s = 1\n')
    s = S.load(p, env={"JETMARKET_COLLECTOR__OKX__CHANNELS": '["trades"]'})
    okx = venue_settings(s, "okx", OkxSettings)
    assert okx.symbols == ["ETH-USDT"] and okx.channels == ["trades"]  # file + env
    assert okx.reconnect.min_s == 1 and okx.reconnect.max_s == 30.0  # partial table
    assert okx.ws_url == "wss://ws.okx.com:8443/ws/v5/public"  # the venue's default
    # a child process gets the effective settings as env and reads the same section
    again = S.load(env=S.to_toml_env(s))
    assert venue_settings(again, "okx", OkxSettings) == okx


def test_section_errors_name_the_key() -> None:
    s = S.load(env={"JETMARKET_COLLECTOR__BINANCE__CHANELS": "[]"})
    with pytest.raises(S.SettingsError, match=r"collector\.binance\.chanels"):
        venue_settings(s, "binance", BinanceSettings)
    s = S.from_mapping({"collector": {"binance": {"depth_interval_ms": 5}}})
    with pytest.raises(S.SettingsError, match=r"collector\.binance\.depth_interval_ms"):
        venue_settings(s, "binance", BinanceSettings)
    s = S.from_mapping({"collector": {"okx": {"reconnect": {"min_s": 0}}}})
    with pytest.raises(S.SettingsError, match=r"collector\.okx\.reconnect: need 0 < min_s"):
        venue_settings(s, "okx", OkxSettings)
    s = S.from_mapping({"collector": {"ccxt": {"exchanges": {"kraken": {"symbols": []}}}}})
    with pytest.raises(S.SettingsError, match=r"collector\.ccxt\.exchanges\.kraken\.symbols"):
        ccxt_settings(s)


def test_a_section_for_no_venue_is_a_typo() -> None:
    s = S.from_mapping({"collector": {"binanse": {"symbols": ["BTCUSDT"]}}})
    with pytest.raises(S.SettingsError, match=r"collector\.binanse: no such venue"):
        check_sections(s, venues())
    check_sections(S.from_mapping({"collector": {"okx": {}, "ccxt": {}}}), venues())
    with pytest.raises(S.SettingsError, match=r"collector\.flush_evry"):  # not a table: a typo
        S.from_mapping({"collector": {"flush_evry": 5}})


@pytest.mark.parametrize("venue", ["okx", "bybit", "deribit", "coinbase", "kraken"])
def test_an_unknown_channel_fails_when_settings_load_and_lists_the_valid_ones(venue: str) -> None:
    cls = _collector_class(venue).settings_class
    s = S.from_mapping({"collector": {venue: {"channels": ["nope"]}}})
    with pytest.raises(S.SettingsError, match=rf"collector\.{venue}\.channels: unknown \['nope'\]"):
        venue_settings(s, venue, cls)
    for ch in sorted(cls.KNOWN_CHANNELS):  # every channel of the map is accepted
        venue_settings(S.from_mapping({"collector": {venue: {"channels": [ch]}}}), venue, cls)
