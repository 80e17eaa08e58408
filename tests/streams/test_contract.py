"""The shared contract: subjects, schemas, settings, provisioning."""

from __future__ import annotations

import msgspec
import pytest
from nats.js import JetStreamContext

from streams import schemas, subjects
from streams import settings as S
from streams.provision import provision


def test_subjects_round_trip() -> None:
    s = subjects.raw("binance", "trade", "BTCUSDT")
    assert s == "raw.binance.trade.BTCUSDT"
    assert subjects.parse_raw(s) == ("binance", "trade", "BTCUSDT")
    m = subjects.market("trade", "binance", "BTC-USDT")
    assert subjects.parse_market(m) == ("trade", "binance", "BTC-USDT")
    # a dot inside a native symbol must not add a token
    assert subjects.raw("kraken", "book", "BTC/USD.d") == "raw.kraken.book.BTC/USD_d"
    with pytest.raises(ValueError):
        subjects.parse_market("raw.binance.trade.BTCUSDT")


def test_every_market_type_round_trips() -> None:
    assert set(schemas.MARKET_TYPES) == {
        "trade",
        "book",
        "bbo",
        "depth",
        "ticker",
        "candle",
        "funding",
        "open_interest",
        "liquidation",
        "mark",
        "option_greeks",
        "instrument",
        "gap",
        "long_short_ratio",
        "taker_volume",
        "open_interest_hist",
        "volatility_index",
    }
    t = schemas.Trade(
        venue="binance",
        symbol="BTC-USDT",
        ts_event=1,
        ts_recv=2,
        id="7",
        price=float("65432.10"),
        size=float("0.00012300"),
        side="sell",
    )
    back = schemas.decode(schemas.encode(t))
    assert back == t and isinstance(back, schemas.Trade)
    with pytest.raises(msgspec.ValidationError):
        schemas.decode(b'{"type":"trade","venue":"x"}')


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(S.SettingsError, match="nats.server.port"):
        S.load(env={"JETMARKET_NATS__SERVER__PORT": "not-a-port"})
    with pytest.raises(S.SettingsError, match="collector.flush_evry"):
        S.load(env={"JETMARKET_COLLECTOR__FLUSH_EVRY": "3"})
    with pytest.raises(S.SettingsError, match="streams.raw.max_age_s"):
        S.load(env={"JETMARKET_STREAMS__RAW__MAX_AGE_S": "-1"})
    s = S.load(env={"JETMARKET_SINK__MARKET__BATCH": "10"})
    assert s.sink.market.batch == 10 and s.sink.market.durable == "sink-market"


def test_settings_from_toml(tmp_path) -> None:
    p = tmp_path / "jm.toml"
    p.write_text('[collector.binance]\nsymbols = ["SOLUSDT"]\n[nats]\nurl = "nats://h:1"\n')
    s = S.load(p, env={"JETMARKET_NATS__URL": "nats://other:2"})
    # a venue's section is kept as given; its schema lives beside its collector
    assert s.collector.sections["binance"] == {"symbols": ["SOLUSDT"]}
    assert s.nats.url == "nats://other:2"  # env wins over the file
    p.write_text("[nats\n")
    with pytest.raises(S.SettingsError, match="not valid TOML"):
        S.load(p, env={})


async def test_provision_is_idempotent_and_updates_limits(js: JetStreamContext, settings) -> None:
    await js.publish("raw.binance.trade.BTCUSDT", b"{}")
    again = await provision(js, settings)
    assert again == [
        "RAW: updated", "MARKET: updated", "EXEC: updated", "DLQ: updated",
        "OBJ_JM_FRAMES: updated", "KV_JM_BUDGET: exists",  # the shared REST budget's bucket
    ]  # fmt: skip
    changed = S.from_mapping({"streams": {"raw": {"max_age_s": 3600, "duplicate_window_s": 60}}})
    await provision(js, changed)
    info = await js.stream_info("RAW")
    assert info.config.max_age == 3600 and info.config.duplicate_window == 60
    assert info.state.messages == 1  # updating limits kept the data


def test_default_chdb_path_is_inside_the_working_directory(tmp_path, monkeypatch) -> None:
    """`make up` keeps its database under ./var of the checkout, never /var/clickhouse."""
    monkeypatch.chdir(tmp_path)
    dsn = S.load(env={}).clickhouse.dsn
    assert dsn == f"chdb://{tmp_path.resolve() / 'var' / 'clickhouse'}"
    rel = S.load(env={"JETMARKET_CLICKHOUSE__DSN": "chdb://./db?x=1"}).clickhouse.dsn
    assert rel == f"chdb://{tmp_path.resolve() / 'db'}?x=1"
    assert S.load(env={"JETMARKET_CLICKHOUSE__DSN": "chdb:///abs/db"}).clickhouse.dsn == (
        "chdb:///abs/db"
    )
