"""Every API endpoint against the real pipeline (tests/api/pipeline.py): answers equal to
the services behind them, bad input (400 with a reason), missing and wrong keys (401/403),
the SQL sandbox's limits, rate limits, and WebSocket push with a slow client dropped."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.api.pipeline import ApiPipeline


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def auth(p: ApiPipeline, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {p.tokens[who]}"}


async def get(http: aiohttp.ClientSession, p: ApiPipeline, path: str, who: str = "market",
              **params: Any) -> tuple[int, Any]:  # fmt: skip
    async with http.get(p.url + path, headers=auth(p, who) if who else {}, params=params) as r:
        body = await r.read()
        try:
            return r.status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return r.status, body


async def until(check: Any, timeout: float = 60.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)


async def test_keys_and_scopes(pipe: ApiPipeline, http: aiohttp.ClientSession) -> None:
    assert (await get(http, pipe, "/v1/health", who=""))[0] == 200
    code, body = await get(http, pipe, "/v1/feeds", who="")
    assert code == 401 and "missing API key" in body["detail"]
    async with http.get(
        pipe.url + "/v1/feeds", headers={"X-API-Key": "jm_000000000000_" + "A" * 43}
    ) as r:
        assert r.status == 401 and "invalid or revoked" in (await r.json())["detail"]
    code, body = await get(http, pipe, "/v1/orders", who="market")
    assert code == 403 and "account scope" in body["detail"]
    code, body = await get(http, pipe, "/v1/sql", who="market", q="SELECT 1")
    assert code == 403  # SQL reads every table: needs account too
    async with http.post(pipe.url + "/v1/orders", headers=auth(pipe, "account"),
                         json={"venue": "binance", "symbol": "BTC-USDT", "side": "buy",
                               "quantity": "0.001", "price": "1"}) as r:  # fmt: skip
        assert r.status == 403 and "trade scope" in (await r.json())["detail"]
    code, body = await get(http, pipe, "/v1/me", who="trader")
    assert code == 200 and body["scopes"] == ["account", "market", "trade"]


async def test_revoked_key_stops_at_once(pipe: ApiPipeline, http: aiohttp.ClientSession) -> None:
    from api.keys import KeyStore

    store = KeyStore(pipe.settings.api.keys_file)
    key, token = store.add("short-lived", ["market"])
    h = {"Authorization": f"Bearer {token}"}
    async with http.get(pipe.url + "/v1/me", headers=h) as r:
        assert r.status == 200
    store.revoke(key.id)
    async with http.get(pipe.url + "/v1/me", headers=h) as r:
        assert r.status == 401
    text = Path(pipe.settings.api.keys_file).read_text()
    assert token.split("_")[2] not in text, "the secret must not be stored"
    assert Path(pipe.settings.api.keys_file).stat().st_mode & 0o777 == 0o600


async def test_feeds_book_bbo_trades(pipe: ApiPipeline, http: aiohttp.ClientSession) -> None:
    async def feeds() -> Any:
        _code, body = await get(http, pipe, "/v1/feeds")
        keys = {(f["venue"], f["channel"]) for f in body["feeds"] if f["rate"] > 0}
        names = {w["worker"].split(":")[0] for w in body["workers"]}
        every = {"collector", "normalizer", "sink", "orderbook", "executor", "api"}
        want = {("binance", "trade"), ("binance", "depth")}
        return body if want <= keys and names >= every else None

    body = await until(feeds)
    row = next(f for f in body["feeds"] if f["channel"] == "trade")
    assert row["age_s"] is not None and row["age_s"] < 10 and row["frames"] > 0

    async def book() -> Any:
        code, b = await get(http, pipe, "/v1/book/binance/BTC-USDT", levels=5)
        return b if code == 200 and b["valid"] and b["bids"] else None

    b = await until(book)
    assert len(b["bids"]) <= 5 and b["bids"][0][0] < b["asks"][0][0]
    code, body = await get(http, pipe, "/v1/book/binance/NOPE-USDT")
    assert code == 404 and "no book" in body["detail"]
    code, body = await get(http, pipe, "/v1/book/binance/BTC USDT")
    assert code == 400 and "symbol must be" in body["detail"]

    async def bbo() -> Any:
        code, body = await get(http, pipe, "/v1/bbo/binance/BTC-USDT")
        return body if code == 200 else None

    q = await until(bbo)
    assert q["type"] == "bbo" and q["bid_price"] < q["ask_price"]

    async def some_trades() -> Any:
        _code, t = await get(http, pipe, "/v1/trades/binance/ETH-USDT", limit=5)
        return t or None

    t = await until(some_trades)
    assert 1 <= len(t) <= 5 and all(x["type"] == "trade" for x in t)
    assert t[0]["ts_recv"] >= t[-1]["ts_recv"]  # newest first
    code, body = await get(http, pipe, "/v1/trades/binance/ETH-USDT", limit=0)
    assert code == 400 and "limit" in body["detail"]


async def test_sql_formats_and_limits(pipe: ApiPipeline, http: aiohttp.ClientSession) -> None:
    async def counted() -> Any:
        code, body = await get(http, pipe, "/v1/sql", who="account",
                               q="SELECT count() AS n FROM trades")  # fmt: skip
        return body if code == 200 and body["rows"][0]["n"] > 5 else None

    await until(counted)
    q = "SELECT symbol, price, size FROM trades ORDER BY ts_event LIMIT 5"
    for fmt in ("json", "csv", "parquet", "arrow"):
        async with http.post(pipe.url + "/v1/sql", headers=auth(pipe, "account"),
                             json={"sql": q, "format": fmt}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            data = await r.read()
        if fmt == "json":
            rows = orjson.loads(data)["rows"]
        elif fmt == "csv":
            lines = data.decode().strip().splitlines()
            assert lines[0] == "symbol,price,size"
            rows = lines[1:]
        elif fmt == "parquet":
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        else:
            rows = pa.ipc.open_stream(data).read_all().to_pylist()
        assert len(rows) == 5, fmt
    # the sandbox's refusals arrive as 400 with ClickHouse's reason
    for bad in ("DROP TABLE trades", "INSERT INTO trades SELECT * FROM trades",
                "SELECT * FROM file('/etc/passwd')", "SELECT 1; SELECT 2"):  # fmt: skip
        async with http.post(pipe.url + "/v1/sql", headers=auth(pipe, "account"),
                             json={"sql": bad}) as r:  # fmt: skip
            body = await r.json()
            assert r.status == 400 and body["detail"].startswith("sql: "), (bad, body)
    # row limits: the request's max_rows, capped by the service
    async with http.post(pipe.url + "/v1/sql", headers=auth(pipe, "account"),
                         json={"sql": "SELECT number FROM system.numbers LIMIT 50",
                               "max_rows": 7}) as r:  # fmt: skip
        body = await r.json()
        assert len(body["rows"]) == 7 and body["truncated"] is True
    async with http.post(pipe.url + "/v1/sql", headers=auth(pipe, "account"),
                         json={"sql": "SELECT 1", "format": "xml"}) as r:  # fmt: skip
        assert r.status == 400 and "format" in (await r.json())["detail"]


async def test_history_paging(pipe: ApiPipeline, http: aiohttp.ClientSession) -> None:
    async def enough() -> Any:
        code, body = await get(http, pipe, "/v1/history/trade", venue="binance",
                               symbol="BTC-USDT", limit=10)  # fmt: skip
        return body if code == 200 and body["next_cursor"] else None

    first = await until(enough)
    assert len(first["rows"]) == 10
    code, second = await get(http, pipe, "/v1/history/trade", venue="binance",
                             symbol="BTC-USDT", limit=10, cursor=first["next_cursor"])  # fmt: skip
    assert code == 200
    ids1 = {r["id"] for r in first["rows"]}
    ids2 = {r["id"] for r in second["rows"]}
    assert ids2 and not ids1 & ids2, "pages overlap"
    assert second["rows"][0]["ts_event"] >= first["rows"][-1]["ts_event"]
    # the same rows as the SQL service gives
    code, direct = await get(http, pipe, "/v1/sql", who="account",
                             q="SELECT id FROM trades WHERE venue='binance' AND symbol='BTC-USDT' "
                               "ORDER BY ts_event, stream_seq LIMIT 10")  # fmt: skip
    assert [r["id"] for r in direct["rows"]] == [r["id"] for r in first["rows"]]
    # a time range (start/end, or from/to)
    t_mid = first["rows"][5]["ts_event"]
    t_end = t_mid + 1  # [t_mid, t_mid + 1 ns): the rows of that instant only
    code, ranged = await get(http, pipe, "/v1/history/trade", venue="binance",
                             symbol="BTC-USDT", start=str(t_mid), limit=3)  # fmt: skip
    assert code == 200 and all(r["ts_event"] >= t_mid for r in ranged["rows"])
    span = {"from": str(t_mid), "to": str(t_end)}
    code, ranged = await get(http, pipe, "/v1/history/trade", venue="binance",
                             symbol="BTC-USDT", **span)  # fmt: skip
    assert code == 200 and ranged["rows"]
    assert all(t_mid <= r["ts_event"] < t_end for r in ranged["rows"])
    async with http.get(pipe.url + "/v1/history/trade", headers=auth(pipe, "market"),
                        params={"venue": "binance", "symbol": "BTC-USDT", "limit": "3",
                                "format": "csv"}) as r:  # fmt: skip
        assert r.status == 200 and r.headers["X-Next-Cursor"]
    for params, why in (
        ({"venue": "binance"}, "symbol is required"),
        ({"venue": "bin'ance", "symbol": "BTC-USDT"}, "venue must be"),
        ({"venue": "binance", "symbol": "BTC-USDT", "start": "yesterday"}, "not a time"),
        ({"venue": "binance", "symbol": "BTC-USDT", "cursor": "1; DROP"}, "cursor"),
        ({"venue": "binance", "symbol": "BTC-USDT", "limit": "10000000"}, "limit must be"),
    ):
        code, body = await get(http, pipe, "/v1/history/trade", **params)
        assert code == 400 and why in body["detail"], (params, body)
    code, body = await get(http, pipe, "/v1/history/nonsense", venue="binance", symbol="X")
    assert code == 400 and "unknown kind" in body["detail"]

    async def candles() -> Any:
        code, body = await get(http, pipe, "/v1/history/ohlcv", venue="binance",
                               symbol="BTC-USDT", interval="1m")  # fmt: skip
        return body if code == 200 and body["rows"] else None

    c = await until(candles)
    assert {"open", "high", "low", "close", "volume"} <= set(c["rows"][0])


async def test_orders_through_the_executor(pipe: ApiPipeline, http: aiohttp.ClientSession) -> None:
    async def bbo() -> Any:
        code, body = await get(http, pipe, "/v1/bbo/binance/BTC-USDT")
        return body if code == 200 else None

    q = await until(bbo)
    price = f"{round(q['bid_price'] * 0.9, 2):.2f}"  # far below: rests
    order = {"venue": "binance", "symbol": "BTC-USDT", "side": "buy", "quantity": "0.001",
             "price": price, "client_order_id": "api-test-1"}  # fmt: skip

    async def place() -> Any:
        async with http.post(pipe.url + "/v1/orders", headers=auth(pipe, "trader"),
                             json=order) as r:  # fmt: skip
            body = await r.json()
            # the paper venue needs instruments and a mark first: refused until then
            return body if r.status == 200 else None

    reply = await until(place)
    assert reply["accepted"] and reply["client_order_id"] == "api-test-1"

    async def listed() -> Any:
        _code, body = await get(http, pipe, "/v1/orders", who="trader")
        return [o for o in body if o["client_order_id"] == "api-test-1"]

    (o,) = await until(listed)
    assert o["state"] in ("new", "pending_new") and o["account"] == "paper"
    # a restarted API knows the open order again (from the orders table via sql.query)
    api = pipe.procs[-1]
    assert api.cmd[-1] == "api" and api.stop() == 0
    api.start()
    await asyncio.to_thread(pipe.wait_http, 60)
    (o,) = await until(listed)
    assert o["state"] == "new" and o["venue"] == "binance" and o["symbol"] == "BTC-USDT"
    # another account's key sees none of it
    code, body = await get(http, pipe, "/v1/orders", who="other")
    assert code == 200 and body == []
    # risk checks are the executor's: a notional over max_order_notional is refused
    big = {**order, "client_order_id": "api-test-big", "quantity": "100000"}
    async with http.post(pipe.url + "/v1/orders", headers=auth(pipe, "trader"), json=big) as r:
        body = await r.json()
        assert r.status == 422 and not body["accepted"] and body["reason"], body
    # bad input never reaches the executor
    for bad, why in (({**order, "quantity": "-1"}, "quantity must be"),
                     ({**order, "side": "up"}, "side"),
                     ({**order, "price": "1e5"}, "price must be")):  # fmt: skip
        async with http.post(pipe.url + "/v1/orders", headers=auth(pipe, "trader"),
                             json=bad) as r:  # fmt: skip
            body = await r.json()
            assert r.status == 400 and why in body["detail"], (bad, body)
    # amend, then cancel the replacement
    async with http.patch(pipe.url + "/v1/orders/api-test-1", headers=auth(pipe, "trader"),
                          json={"price": f"{float(price) - 1:.2f}"}) as r:  # fmt: skip
        body = await r.json()
        assert r.status == 200 and body["accepted"], body
        new_id = body["client_order_id"]  # the replacement; related names the original
        assert body["related"] == ["api-test-1"] and new_id != "api-test-1"
    async with http.delete(pipe.url + f"/v1/orders/{new_id}", headers=auth(pipe, "trader"),
                           params={"venue": "binance", "symbol": "BTC-USDT"}) as r:  # fmt: skip
        body = await r.json()
        assert r.status == 200 and body["accepted"], body

    async def gone() -> Any:
        _code, body = await get(http, pipe, "/v1/orders", who="trader")
        return not [o for o in body if o["client_order_id"] in ("api-test-1", new_id)]

    await until(gone)
    code, body = await get(http, pipe, "/v1/positions", who="trader")
    assert code == 200 and isinstance(body, list)


async def test_websocket_push_and_slow_client(
    pipe: ApiPipeline, http: aiohttp.ClientSession
) -> None:
    url = pipe.url.replace("http", "ws") + "/v1/ws"
    async with http.ws_connect(url) as ws:
        await ws.send_str(orjson.dumps({"key": "jm_000000000000_" + "B" * 43}).decode())
        msg = await ws.receive(timeout=5)
        assert "invalid or missing API key" in msg.data
    async with http.ws_connect(url) as ws:
        await ws.send_str(orjson.dumps({"key": pipe.tokens["market"]}).decode())
        await ws.send_str(
            orjson.dumps(
                {"subscribe": ["market.trade.>", "exec.evt.paper.>", "ctl.exec.paper", "market.*x"]}
            ).decode()
        )
        replies, lines = [], []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not lines:
            m = await ws.receive(timeout=10)
            for line in m.data.split("\n"):
                obj = orjson.loads(line)
                (lines if "subject" in obj and "data" in obj else replies).append(obj)
        assert {"subscribed": "market.trade.>"} in replies
        errs = {r.get("subject"): r["error"] for r in replies if "error" in r}
        assert "account scope" in errs["exec.evt.paper.>"]
        assert "only market" in errs["ctl.exec.paper"]
        assert "not a subject pattern" in errs["market.*x"]
        assert lines[0]["subject"].startswith("market.trade.binance.")
        assert lines[0]["data"]["type"] == "trade"
    # another account's events, anything outside market/exec, too many subscriptions
    async with http.ws_connect(url) as ws:
        await ws.send_str(orjson.dumps({"key": pipe.tokens["other"]}).decode())
        many = [f"market.trade.binance.S{i}" for i in range(70)]
        await ws.send_str(orjson.dumps({"subscribe": ["exec.evt.paper.>", ">", *many]}).decode())
        answers = [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(72)]
        errs = [a for a in answers if "error" in a]
        assert "only exec.evt.other" in errs[0]["error"]
        assert "only market" in errs[1]["error"]
        assert sum("at most 64" in a["error"] for a in errs) == 70 - 64
    # a client that stops reading is dropped with a reason; the API stays healthy
    async with http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(orjson.dumps({"key": pipe.tokens["market"]}).decode())
        await ws.send_str(orjson.dumps({"subscribe": ["market.>"]}).decode())
        await ws.receive(timeout=5)  # subscribed
        emu = pipe.settings.collector.sections["binance"]["ws_url"].replace("ws://", "http://")
        async with http.post(f"{emu}/_emu/emit", params={"n": "60000", "rate": "20000"}) as r:
            assert r.status == 200
        # not reading now: the socket buffers fill, then the API's queue, and it drops us
        await asyncio.sleep(3)
        reason = ""
        async for m in ws:
            if m.type == aiohttp.WSMsgType.TEXT and '"error"' in m.data[-300:]:
                reason = m.data[-300:]
        assert ws.close_code == 4008 and "slow consumer" in reason, (ws.close_code, reason)
    code, body = await get(http, pipe, "/v1/health", who="")
    assert code == 200 and body["ok"]


async def test_rate_limit_per_key_and_no_cors_by_default(
    pipe: ApiPipeline, http: aiohttp.ClientSession
) -> None:
    from api.keys import KeyStore

    _, token = KeyStore(pipe.settings.api.keys_file).add("slow", ["market"], rate_per_s=1.0)
    h = {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
    codes = []
    for _ in range(4):
        async with http.get(pipe.url + "/v1/me", headers=h) as r:
            codes.append(r.status)
            if r.status == 429:
                assert float(r.headers["Retry-After"]) > 0
                assert "rate limit" in (await r.json())["detail"]
            assert "Access-Control-Allow-Origin" not in r.headers  # api.cors_origins empty
    assert codes[0] == 200 and 429 in codes, codes
    # another key is not slowed by this one
    assert (await get(http, pipe, "/v1/me", who="market"))[0] == 200


async def test_gap_events_count_per_venue_channel(
    pipe: ApiPipeline, http: aiohttp.ClientSession
) -> None:
    from streams import schemas, subjects
    from streams.bus.connect import connect

    nc = await connect(pipe.settings.nats, "test")  # admin: stands in for the normalizer
    now = time.time_ns()
    try:
        for sym in ("BTC-USDT", "ETH-USDT"):  # one closed connection: a gap per symbol
            g = schemas.Gap(venue="gapvenue", symbol=sym, ts_event=now, ts_recv=now,
                            reason="reconnect", channel="ws",
                            detail="connection c1 closed")  # fmt: skip
            await nc.publish(subjects.market("gap", "gapvenue", sym), schemas.encode(g))
        g = schemas.Gap(venue="gapvenue", symbol="BTC-USDT", ts_event=now, ts_recv=now,
                        reason="sequence", channel="book", expected_seq=5, got_seq=7)  # fmt: skip
        await nc.publish(subjects.market("gap", "gapvenue", "BTC-USDT"), schemas.encode(g))
        await nc.flush()
    finally:
        await nc.close()

    async def rows() -> Any:
        _, body = await get(http, pipe, "/v1/feeds")
        got = {f["channel"]: f for f in body["feeds"] if f["venue"] == "gapvenue"}
        return got if len(got) == 2 else None

    got = await until(rows, timeout=10)
    assert (got["ws"]["reconnects"], got["ws"]["gaps"]) == (1, 0)
    assert (got["book"]["gaps"], got["book"]["raw"]) == (1, False)
    _, gaps = await get(http, pipe, "/v1/gaps", limit=3)
    assert gaps[0]["venue"] == "gapvenue" and gaps[0]["reason"] == "sequence"  # newest first


def test_damaged_keys_file_admits_nobody(tmp_path: Path) -> None:
    from api.keys import KeysError, KeyStore

    store = KeyStore(tmp_path / "keys.json")
    _, token = store.add("a", ["market"])
    assert store.verify(token) is not None
    (tmp_path / "keys.json").write_text("{not json")
    assert store.verify(token) is None
    with pytest.raises(KeysError, match="is not a keys file"):
        store.list()


async def test_status_bbo_list_metrics_and_nats_ws_handoff(
    pipe: ApiPipeline, http: aiohttp.ClientSession
) -> None:
    import nats

    code, workers = await get(http, pipe, "/v1/status")
    assert code == 200 and any(w["worker"] == "api" for w in workers)

    async def bbos() -> Any:
        _, body = await get(http, pipe, "/v1/bbo")
        return {b["symbol"] for b in body} >= {"BTC-USDT", "ETH-USDT"}

    await until(bbos)
    async with http.get(pipe.url + "/metrics") as r:
        assert r.status == 200 and "jetmarket_api_ws_messages_total" in await r.text()
    # /v1/nats hands a market key what a browser needs: it works over the WebSocket
    code, hand = await get(http, pipe, "/v1/nats")
    assert code == 200 and hand["url"] == pipe.nats.ws_url and hand["user"] == "browser"
    nc = await nats.connect(hand["url"], user=hand["user"], password=hand["password"],
                            allow_reconnect=False, connect_timeout=3)  # fmt: skip
    try:
        sub = await nc.subscribe("market.>")
        msg = await sub.next_msg(timeout=10)
        assert msg.subject.startswith("market.")
    finally:
        await nc.close()


async def test_algorithms_through_the_executor(
    pipe: ApiPipeline, http: aiohttp.ClientSession
) -> None:
    async def bbo() -> Any:
        code, body = await get(http, pipe, "/v1/bbo/binance/ETH-USDT")
        return body if code == 200 else None

    q = await until(bbo)
    limit = f"{round(q['bid_price'] * 0.8, 2):.2f}"  # children rest far below: nothing fills
    end = time.time_ns() + 120 * 10**9
    twap = {"venue": "binance", "symbol": "ETH-USDT", "algo": "twap", "side": "buy",
            "quantity": "0.03", "limit_price": limit, "end_ts": end, "slices": 3,
            "parent_id": "api-twap-1"}  # fmt: skip

    async def start() -> Any:
        async with http.post(pipe.url + "/v1/algos", headers=auth(pipe, "trader"),
                             json=twap) as r:  # fmt: skip
            return await r.json() if r.status == 200 else None

    reply = await until(start)
    assert reply["accepted"] and reply["client_order_id"] == "api-twap-1"

    async def listed() -> Any:
        _, body = await get(http, pipe, "/v1/algos", who="trader")
        return [a for a in body if a["parent_id"] == "api-twap-1"]

    (parent,) = await until(listed)
    assert parent["state"] == "working" and parent["algo"] == "twap"
    # what a restarted API would seed it from (the sink's parents table)
    from api.live import PARENTS_SQL

    async def stored() -> Any:
        code, body = await get(http, pipe, "/v1/sql", who="account", q=PARENTS_SQL)
        assert code == 200, body
        return [r for r in body["rows"] if "api-twap-1" in r.values()]

    await until(stored)
    # no trade scope, or another account: refused before the executor
    async with http.post(pipe.url + "/v1/algos/api-twap-1/cancel",
                         headers=auth(pipe, "account")) as r:  # fmt: skip
        assert r.status == 403
    async with http.post(pipe.url + "/v1/algos", headers=auth(pipe, "trader"),
                         json={**twap, "algo": "martingale"}) as r:  # fmt: skip
        assert r.status == 400 and "algo" in (await r.json())["detail"]
    async with http.post(pipe.url + "/v1/algos/api-twap-1/cancel",
                         headers=auth(pipe, "trader")) as r:  # fmt: skip
        body = await r.json()
        assert r.status == 200 and body["accepted"], body

    async def canceled() -> Any:
        _, body = await get(http, pipe, "/v1/algos", who="trader", active="false")
        return [a for a in body if a["parent_id"] == "api-twap-1" and a["state"] == "canceled"]

    await until(canceled)
