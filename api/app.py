"""The FastAPI application: routes, API-key scopes, per-key rate limits, CORS, the console.

Every data endpoint asks a service that exists: ``sql.query`` (history and SQL, with the
service's read-only sandbox and limits), ``book.get`` (validated books), ``status.query``
(workers), the executor's ``ctl.exec.<account>`` request path (orders, with its risk
checks). Live BBO, trades, gaps, orders and positions are the messages on the bus (api/live.py).
"""

import asyncio
import contextlib
import io
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

from api import hub as hubmod
from api.keys import ApiKey, KeyStore
from api.live import TERMINAL, Live
from streams import schemas, sql, subjects
from streams.settings import Settings
from streams.tables import TABLES

STATIC = Path(__file__).parent / "static"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_:/\-]{1,64}$")  # venue, symbol, account, order id
CID_RE = re.compile(r"^[A-Za-z0-9_:/.\-]{1,64}$")
DECIMAL_RE = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
FORMATS = ("json", "csv", "parquet", "arrow")
MEDIA = {"json": "application/json", "csv": "text/csv",
         "parquet": "application/vnd.apache.parquet",
         "arrow": "application/vnd.apache.arrow.stream"}  # fmt: skip
MAX_PATTERNS = 64  # subscriptions one WebSocket may hold (each is a NATS subscription)
Format = Literal["json", "csv", "parquet", "arrow"]


class Services:
    """What the routes need from outside: the NATS client and how to run SQL."""

    def __init__(self, nc: Client, settings: Settings, live: Live, hub: hubmod.Hub) -> None:
        self.nc = nc
        self.settings = settings
        self.live = live
        self.hub = hub
        self.dsn = sql.query_dsn(settings)

    async def sql(self, text: str, max_rows: int, timeout: float) -> sql.SqlResult:
        return await sql.query_any(self.dsn, text, nc=self.nc, timeout=timeout, max_rows=max_rows)


# -- request bodies ----------------------------------------------------------------------
class SqlBody(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000, description="one read statement")
    format: Format = "json"
    max_rows: int = Field(10_000, ge=1)
    timeout_s: float = Field(30.0, gt=0)


class NewOrder(BaseModel):
    venue: str = Field(description="market venue, e.g. binance")
    symbol: str = Field(description="jetmarket symbol, e.g. BTC-USDT")
    side: Literal["buy", "sell"]
    order_type: Literal["market", "limit", "stop", "stop_limit", "take_profit"] = "limit"
    quantity: str = Field(description="base units, a decimal string")
    price: str | None = Field(None, description="limit price, a decimal string")
    stop_price: str | None = None
    time_in_force: Literal["GTC", "IOC", "FOK", "POST_ONLY"] = "GTC"
    reduce_only: bool = False
    timeout_s: float | None = Field(None, gt=0)
    client_order_id: str | None = Field(None, description="yours for idempotency; else made")


class NewAlgo(BaseModel):
    venue: str = Field(description="market venue of the parent, e.g. binance")
    symbol: str
    algo: Literal["twap", "vwap", "pov", "iceberg", "peg"]
    side: Literal["buy", "sell"]
    quantity: str = Field(description="base units, a decimal string")
    limit_price: str | None = Field(None, description="never buy above / sell below")
    start_ts: int | None = Field(None, ge=0, description="ns since epoch; default now")
    end_ts: int | None = Field(None, ge=0, description="TWAP/VWAP horizon, POV end (ns)")
    slices: int | None = Field(None, ge=1, description="TWAP/VWAP child count")
    participation: float | None = Field(None, gt=0, le=1, description="POV share")
    display: str | None = Field(None, description="iceberg: visible quantity")
    offset_ticks: int = Field(0, ge=0, description="peg: ticks inside the touch")
    venues: list[str] = Field(default_factory=list, description="smart routing candidates")
    parent_id: str | None = Field(None, description="yours for idempotency; else made")


class AmendAlgo(BaseModel):
    quantity: str | None = None
    limit_price: str | None = None
    end_ts: int | None = Field(None, ge=0)
    participation: float | None = Field(None, gt=0, le=1)
    display: str | None = None


class Amend(BaseModel):
    quantity: str | None = None
    price: str | None = None


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": what}
    for code, what in ((400, "bad input (the reason)"), (401, "no valid API key"),
                       (403, "the key lacks a scope or account"), (429, "rate limit"),
                       (503, "the service behind it does not answer"))
}  # fmt: skip
# the trading routes: also 422, the executor refused (its reason)
TRADE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 422: {"model": Problem}}


def _bad(reason: str, code: int = 400) -> HTTPException:
    return HTTPException(status_code=code, detail=reason)


def _token(name: str, value: str) -> str:
    if not TOKEN_RE.fullmatch(value):
        raise _bad(f"{name} must be 1-64 of A-Z a-z 0-9 _ - : / (got {value[:80]!r})")
    return value


def _cid(value: str) -> str:
    """A client order id: a payload value, not a subject token, so '.' is allowed too (the
    executor names replacements ``<id>.r1``)."""
    if not CID_RE.fullmatch(value):
        raise _bad(f"client_order_id must be 1-64 of A-Z a-z 0-9 _ - : / . (got {value[:80]!r})")
    return value


def _decimal(name: str, value: str | None) -> str | None:
    if value is not None and not DECIMAL_RE.fullmatch(value):
        raise _bad(f"{name} must be a positive decimal string like '0.01' (got {value[:40]!r})")
    return value


def _time_ns(name: str, value: str | None) -> int | None:
    """Nanoseconds from an integer (s, ms, us or ns by magnitude) or an ISO-8601 time."""
    if value is None or value == "":
        return None
    if value.isdigit():
        n = int(value)
        while n and n < 10**17:  # seconds, ms or us -> ns
            n *= 1000
        return n
    from datetime import UTC, datetime

    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"{name}: not a time: {value[:40]!r} (ISO-8601 or epoch s/ms/us/ns)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1e9)


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: ApiKey) -> float:
        """0 when allowed, else the seconds to wait."""
        rate = key.rate_per_s or self.rate
        # a key with its own rate gets one second of it as burst, others api.burst
        burst = max(1, math.ceil(key.rate_per_s)) if key.rate_per_s else max(self.burst, 1)
        now = time.monotonic()
        tokens, at = self.buckets.get(key.id, (float(burst), now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens < 1:
            self.buckets[key.id] = (tokens, now)
            return (1 - tokens) / rate
        self.buckets[key.id] = (tokens - 1, now)
        return 0.0


def _result(r: sql.SqlResult, fmt: str, extra: dict[str, Any] | None = None) -> Response:
    """A query result in ``fmt``; paging (next_cursor) in a header for the binary formats."""
    headers = {"X-Truncated": "1" if r.truncated else "0"}
    cursor = (extra or {}).get("next_cursor")
    if cursor:
        headers["X-Next-Cursor"] = cursor
    if fmt == "json":
        body = {"columns": r.columns, "types": r.types,
                "rows": [dict(zip(r.columns, row, strict=True)) for row in r.rows],
                "truncated": r.truncated, **(extra or {})}  # fmt: skip
        return Response(orjson.dumps(body, default=str), media_type=MEDIA["json"],
                        headers=headers)  # fmt: skip
    if fmt == "csv":
        return Response(sql.format_csv(r) + "\n", media_type=MEDIA["csv"], headers=headers)
    table = sql.to_arrow(r)
    buf = io.BytesIO()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, buf)
    else:
        import pyarrow as pa

        with pa.ipc.new_stream(buf, table.schema) as w:
            w.write_table(table)
    return Response(buf.getvalue(), media_type=MEDIA[fmt], headers=headers)


def create_app(svc: Services, keys: KeyStore) -> FastAPI:
    cfg = svc.settings.api
    app = FastAPI(
        title="jetmarket API",
        version="1",
        description="Market data, history, SQL, live state and paper/live orders of a "
        "jetmarket deployment. Authenticate with `Authorization: Bearer <key>` or "
        "`X-API-Key: <key>` (keys: `jetmarket api keys add`). docs/api.md has examples.",
        # no Swagger/ReDoc pages: they load scripts from a CDN into this origin, where the
        # console keeps its key; the schema is at /openapi.json (and docs/openapi.json)
        docs_url=None,
        redoc_url=None,
    )
    limiter = RateLimiter(cfg.rate_per_s, cfg.burst)
    bearer = HTTPBearer(auto_error=False, description="an API key: jm_<id>_<secret>")
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.cors_origins, allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["X-Next-Cursor", "X-Truncated", "Retry-After"],
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        return JSONResponse({"detail": f"{where}: {err.get('msg')}"}, status_code=400)

    def need(*scopes: str) -> Callable[..., Awaitable[ApiKey]]:
        async def check(
            request: Request,
            auth: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
            api_key: Annotated[str | None, Depends(header)] = None,
        ) -> ApiKey:
            token = api_key or (auth.credentials if auth else "")
            if not token:
                raise _bad("missing API key: Authorization: Bearer <key> or X-API-Key", 401)
            key = keys.verify(token)
            if key is None:
                raise _bad("invalid or revoked API key", 401)
            lacking = [s for s in scopes if s not in key.scopes]
            if lacking:
                raise _bad(f"this key lacks the {', '.join(lacking)} scope", 403)
            wait = limiter.take(key)
            if wait:
                why = f"rate limit of key {key.id}: retry in {wait:.2f}s"
                raise HTTPException(429, detail=why, headers={"Retry-After": f"{wait:.2f}"})
            return key

        return check

    Market = Annotated[ApiKey, Depends(need("market"))]
    Account = Annotated[ApiKey, Depends(need("account"))]
    Trade = Annotated[ApiKey, Depends(need("trade"))]
    Sql = Annotated[ApiKey, Depends(need("market", "account"))]

    async def run_sql(text: str, max_rows: int, timeout: float) -> sql.SqlResult:
        try:
            return await svc.sql(text, min(max_rows, cfg.sql_max_rows),
                                 min(timeout, cfg.sql_timeout_s))  # fmt: skip
        except sql.SqlError as exc:
            msg = str(exc)
            if msg.startswith("no answer on"):
                raise _bad(msg, 503) from None
            raise _bad(f"sql: {msg}") from None

    # -- meta ------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/v1/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        """No key needed: is the API up and connected to NATS."""
        return {"ok": svc.nc.is_connected, "ws_clients": svc.hub.clients()}

    @app.get("/v1/me", tags=["meta"], responses=ERRORS)
    async def me(key: Annotated[ApiKey, Depends(need())]) -> dict[str, Any]:
        """The calling key: id, name, scopes, account."""
        return {"id": key.id, "name": key.name, "scopes": key.scopes, "account": key.account}

    @app.get("/v1/status", tags=["live"], responses=ERRORS)
    async def status(_k: Market) -> list[dict[str, Any]]:
        """Every worker's health line (status.query)."""
        return await svc.live.status()

    @app.get("/v1/nats", tags=["live"], responses=ERRORS)
    async def nats_ws(_k: Market) -> dict[str, Any]:
        """Where a browser (nats.ws) subscribes to ``market.>`` directly, and as whom: the
        read-only ``browser`` identity (no publish, no other subject)."""
        from streams.bus import auth as natsauth

        creds = svc.settings.nats.credentials_dir
        try:
            password = natsauth.password_file(creds, "browser").read_text().strip()
        except (natsauth.CredentialsError, OSError):
            raise _bad("no browser credentials here (nats.credentials_dir)", 503) from None
        srv, api = svc.settings.nats.server, svc.settings.api
        scheme = "wss" if api.nats_ws_tls_cert else "ws"
        on = api.nats_ws != "off"
        return {"url": f"{scheme}://{srv.host}:{api.nats_ws_port}" if on else None,
                "user": "browser", "password": password, "subjects": ["market.>"]}  # fmt: skip

    # -- SQL and history -------------------------------------------------------------------
    @app.post("/v1/sql", tags=["history"], responses=ERRORS)
    async def sql_post(body: SqlBody, _k: Sql) -> Response:
        """One read-only statement through ``sql.query`` (the sink's sandbox and limits).
        Needs the market and account scopes: SQL can read every table."""
        return _result(await run_sql(body.sql, body.max_rows, body.timeout_s), body.format)

    @app.get("/v1/sql", tags=["history"], responses=ERRORS)
    async def sql_get(
        _k: Sql, q: Annotated[str, Query(min_length=1, max_length=100_000)],
        format: Format = "json", max_rows: Annotated[int, Query(ge=1)] = 10_000,
    ) -> Response:  # fmt: skip
        """The same as POST, for a link or a spreadsheet import."""
        return _result(await run_sql(q, max_rows, cfg.sql_timeout_s), format)

    @app.get("/v1/history/{kind}", tags=["history"], responses=ERRORS)
    async def history(
        kind: str, _k: Market,
        venue: str, symbol: str | None = None,
        start: Annotated[str | None, Query(description="ISO-8601 or epoch s/ms/us/ns")] = None,
        end: Annotated[str | None, Query(description="exclusive; same forms")] = None,
        from_: Annotated[str | None, Query(alias="from", description="= start")] = None,
        to: Annotated[str | None, Query(description="= end")] = None,
        limit: Annotated[int, Query(ge=1)] = 1000,
        cursor: Annotated[str | None, Query(description="next_cursor of the last page")] = None,
        interval: Annotated[Literal["1m", "1h"], Query(description="ohlcv only")] = "1m",
        format: Format = "json",
    ) -> Response:  # fmt: skip
        """History of one market type (``trade``, ``bbo``, ``book``, ``depth``, ``ticker``,
        ``candle``, ``funding``, ``open_interest``, ``liquidation``, ``mark``,
        ``instrument``, ``gap``) or ``ohlcv`` (candles ClickHouse makes from trades), oldest
        first, in pages: pass ``next_cursor`` back as ``cursor``."""
        if kind != "ohlcv" and kind not in TABLES:
            raise _bad(f"unknown kind {kind!r}; one of ohlcv, {', '.join(TABLES)}")
        if limit > cfg.sql_max_rows:
            raise _bad(f"limit must be <= {cfg.sql_max_rows} (api.sql_max_rows)")
        where = [f"venue = '{_token('venue', venue)}'"]
        if symbol is not None:
            where.append(f"symbol = '{_token('symbol', symbol)}'")
        elif kind not in ("instrument", "gap"):
            raise _bad(f"symbol is required for {kind}")
        t0, t1 = _time_ns("start", start or from_), _time_ns("end", end or to)
        if kind == "ohlcv":
            table, ts, order = f"candles_{interval}", "bucket", "bucket"
            conv = "toDateTime(intDiv({}, 1000000000))"
            select = "*, toUnixTimestamp(bucket) AS cursor_s"
        else:
            table, ts, order = TABLES[kind], "ts_event", "ts_event, stream_seq"
            # the SELECT's ts_event alias (ns) is what WHERE sees: compare plain integers
            conv = "{}"
            select = (
                "* EXCEPT (ts_event, ts_recv), toUnixTimestamp64Nano(ts_event) AS ts_event, "
                "toUnixTimestamp64Nano(ts_recv) AS ts_recv"
            )
        if t0 is not None:
            where.append(f"{ts} >= {conv.format(t0)}")
        if t1 is not None:
            where.append(f"{ts} < {conv.format(t1)}")
        if cursor:
            m = re.fullmatch(r"(\d{1,20}):(\d{1,20})", cursor)
            if not m:
                raise _bad("cursor: pass next_cursor of the previous page as it is")
            c_ts, c_seq = int(m.group(1)), int(m.group(2))
            if kind == "ohlcv":
                where.append(f"bucket > toDateTime({c_ts})")
            else:
                where.append(f"(ts_event, stream_seq) > ({conv.format(c_ts)}, {c_seq})")
        text = (f"SELECT {select} FROM {table} WHERE {' AND '.join(where)} "
                f"ORDER BY {order} LIMIT {limit + 1}")  # fmt: skip
        r = await run_sql(text, limit + 1, cfg.sql_timeout_s)
        next_cursor = None
        if len(r.rows) > limit:
            r.rows = r.rows[:limit]
            last = dict(zip(r.columns, r.rows[-1], strict=True))
            if kind == "ohlcv":
                next_cursor = f"{int(last['cursor_s'])}:0"
            else:
                next_cursor = f"{int(last['ts_event'])}:{int(last['stream_seq'])}"
        return _result(r, format, {"next_cursor": next_cursor})

    # -- live state ------------------------------------------------------------------------
    @app.get("/v1/book/{venue}/{symbol}", tags=["live"], responses=ERRORS)
    async def book(
        venue: str, symbol: str, _k: Market, levels: Annotated[int, Query(ge=1, le=5000)] = 50
    ) -> Response:
        """The validated book the orderbook service holds (``book.get``)."""
        subj = subjects.book_get(_token("venue", venue), _token("symbol", symbol))
        try:
            msg = await svc.nc.request(subj, b"", timeout=2)
        except Exception:
            raise _bad("no orderbook service answered (book.get); is it running?", 503) from None
        body = orjson.loads(msg.data)
        if "error" in body:
            raise _bad(f"{body['error']}: not synced yet, or not collected", 404)
        body["bids"], body["asks"] = body["bids"][:levels], body["asks"][:levels]
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/v1/bbo", tags=["live"], responses=ERRORS)
    async def bbo_all(_k: Market) -> Response:
        """The last BBO of every symbol the orderbook publishes."""
        return Response(b"[" + b",".join(svc.live.bbo.values()) + b"]",
                        media_type="application/json")  # fmt: skip

    @app.get("/v1/bbo/{venue}/{symbol}", tags=["live"], responses=ERRORS)
    async def bbo(venue: str, symbol: str, _k: Market) -> Response:
        """The last BBO of one symbol (``market.bbo``, from the validated book)."""
        data = svc.live.bbo.get((_token("venue", venue), _token("symbol", symbol)))
        if data is None:
            raise _bad(f"no BBO seen for {venue} {symbol} since the API started", 404)
        return Response(data, media_type="application/json")

    @app.get("/v1/trades/{venue}/{symbol}", tags=["live"], responses=ERRORS)
    async def trades(
        venue: str, symbol: str, _k: Market, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> Response:
        """The last trades of one symbol, newest first."""
        q = svc.live.trades.get((_token("venue", venue), _token("symbol", symbol)))
        items = list(q)[-limit:][::-1] if q else []
        return Response(b"[" + b",".join(items) + b"]", media_type="application/json")

    @app.get("/v1/feeds", tags=["live"], responses=ERRORS)
    async def feeds(_k: Market) -> dict[str, Any]:
        """Per venue/channel: frames in RAW, rate (frames/s, and the last minute's samples),
        age of the newest frame, gaps and reconnects seen since the API started; rows with
        ``raw: false`` are named by gap events only (``ws``: connection closes, ``book``:
        the orderbook's sequence/checksum problems); plus every worker's state."""
        return {"feeds": svc.live.feed_rows(), "workers": svc.live.workers}

    @app.get("/v1/gaps", tags=["live"], responses=ERRORS)
    async def gaps(_k: Market, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
        """Recent data-quality events (``market.gap``), newest first."""
        items = list(svc.live.gaps)[-limit:][::-1]
        return Response(b"[" + b",".join(items) + b"]", media_type="application/json")

    @app.get("/v1/positions", tags=["account"], responses=ERRORS)
    async def positions(key: Account) -> list[dict[str, Any]]:
        """The key's account: the last position of each symbol."""
        return [p for (a, _, _), p in sorted(svc.live.positions.items()) if a == key.account]

    @app.get("/v1/orders", tags=["account"], responses=ERRORS)
    async def orders(key: Account, open: bool = True) -> list[dict[str, Any]]:
        """The key's account: orders (open only unless ``open=false``), newest first."""
        rows = [o for (a, _), o in svc.live.orders.items() if a == key.account
                and (not open or o.get("state") not in TERMINAL)]  # fmt: skip
        return sorted(rows, key=lambda o: -int(o.get("ts_event") or 0))

    # -- orders through the executor's request path (same risk checks) --------------------
    async def command(key: ApiKey, **fields: Any) -> JSONResponse:
        return await send_command(key, schemas.OrderCommand, "order", fields)

    async def send_command(
        key: ApiKey, schema: type[Any], what: str, fields: dict[str, Any]
    ) -> JSONResponse:
        """A command of ``schema`` (an order's or an algorithm's) on the key's account, from
        ``fields``, asked of the executor; 400 naming ``what`` when the fields make none."""
        now = time.time_ns()
        try:
            cmd = schema(account=key.account, ts_event=now, ts_recv=now, **fields)
        except (TypeError, msgspec.ValidationError) as exc:
            raise _bad(f"bad {what}: {exc}") from None
        try:
            msg = await svc.nc.request(subjects.exec_req(key.account), schemas.encode(cmd),
                                       timeout=15)  # fmt: skip
        except Exception:
            raise _bad(f"no executor answered for account {key.account}", 503) from None
        reply = orjson.loads(msg.data)
        # refused by the executor (risk, state, unknown order): 422 with its reason
        return JSONResponse(reply, status_code=200 if reply.get("accepted") else 422)

    def _ref(
        key: ApiKey, what: str, ident: str, venue: str | None, symbol: str | None
    ) -> tuple[str, str]:
        """(venue, symbol) of the key's order or parent (``what``): as given, else as the
        API last saw it; 404 when neither says."""
        seen = svc.live.orders if what == "order" else svc.live.parents
        known = seen.get((key.account, ident)) or {}
        venue, symbol = venue or known.get("venue"), symbol or known.get("symbol")
        if not venue or not symbol:
            raise _bad(f"{what} {ident} not seen by the API: pass venue and symbol", 404)
        return _token("venue", venue), _token("symbol", symbol)

    @app.post("/v1/orders", tags=["trade"], responses=TRADE_ERRORS)
    async def place(body: NewOrder, key: Trade) -> JSONResponse:
        """Place an order on the key's account (``ctl.exec.<account>``: the executor's risk
        checks apply). 200 with the executor's reply, 422 when it refuses (reason)."""
        cid = body.client_order_id or f"api-{secrets.token_hex(8)}"
        return await command(
            key, action="new", client_order_id=_cid(cid),
            venue=_token("venue", body.venue), symbol=_token("symbol", body.symbol),
            side=body.side, order_type=body.order_type,
            quantity=_decimal("quantity", body.quantity), price=_decimal("price", body.price),
            stop_price=_decimal("stop_price", body.stop_price),
            time_in_force=body.time_in_force, reduce_only=body.reduce_only,
            timeout_s=body.timeout_s,
        )  # fmt: skip

    @app.delete("/v1/orders/{client_order_id}", tags=["trade"], responses=TRADE_ERRORS)
    async def cancel(
        client_order_id: str, key: Trade, venue: str | None = None, symbol: str | None = None
    ) -> JSONResponse:
        """Cancel one order of the key's account."""
        cid = _cid(client_order_id)
        v, s = _ref(key, "order", cid, venue, symbol)
        return await command(key, action="cancel", client_order_id=cid, venue=v, symbol=s)

    @app.patch("/v1/orders/{client_order_id}", tags=["trade"], responses=TRADE_ERRORS)
    async def amend(
        client_order_id: str, body: Amend, key: Trade,
        venue: str | None = None, symbol: str | None = None,
    ) -> JSONResponse:  # fmt: skip
        """Amend price and/or quantity (the executor's replace: cancel, then a new order;
        the reply's ``client_order_id`` is the new order's, ``related`` the original)."""
        if body.price is None and body.quantity is None:
            raise _bad("give price and/or quantity")
        cid = _cid(client_order_id)
        v, s = _ref(key, "order", cid, venue, symbol)
        known = svc.live.orders.get((key.account, cid)) or {}
        return await command(
            key, action="replace", client_order_id=cid, venue=v, symbol=s,
            side=known.get("side"), order_type=known.get("order_type"),
            quantity=_decimal("quantity", body.quantity), price=_decimal("price", body.price),
        )  # fmt: skip

    # -- execution algorithms (executor/algo), the same request path ----------------------
    async def algo_command(key: ApiKey, **fields: Any) -> JSONResponse:
        return await send_command(key, schemas.AlgoCommand, "algo command", fields)

    @app.get("/v1/algos", tags=["account"], responses=ERRORS)
    async def algos(key: Account, active: bool = True) -> list[dict[str, Any]]:
        """The key's account: algorithm parents (working/paused unless ``active=false``)."""
        rows = [a for (acct, _), a in svc.live.parents.items() if acct == key.account
                and (not active or a.get("state") in ("working", "paused"))]  # fmt: skip
        return sorted(rows, key=lambda a: -int(a.get("ts_event") or 0))

    @app.post("/v1/algos", tags=["trade"], responses=TRADE_ERRORS)
    async def algo_new(body: NewAlgo, key: Trade) -> JSONResponse:
        """Start an execution algorithm (TWAP, VWAP, POV, iceberg, peg) on the key's account;
        its children go through the executor's risk checks like any order."""
        pid = body.parent_id or f"algo-{secrets.token_hex(6)}"
        return await algo_command(
            key, action="new", parent_id=_cid(pid), venue=_token("venue", body.venue),
            symbol=_token("symbol", body.symbol), algo=body.algo, side=body.side,
            quantity=_decimal("quantity", body.quantity),
            limit_price=_decimal("limit_price", body.limit_price), start_ts=body.start_ts,
            end_ts=body.end_ts, slices=body.slices, participation=body.participation,
            display=_decimal("display", body.display), offset_ticks=body.offset_ticks,
            venues=[_token("venues", v) for v in body.venues],
        )  # fmt: skip

    @app.patch("/v1/algos/{parent_id}", tags=["trade"], responses=TRADE_ERRORS)
    async def algo_amend(
        parent_id: str, body: AmendAlgo, key: Trade,
        venue: str | None = None, symbol: str | None = None,
    ) -> JSONResponse:  # fmt: skip
        """Change a parent's quantity, limit price, end, participation or display."""
        pid = _cid(parent_id)
        v, s = _ref(key, "parent", pid, venue, symbol)
        return await algo_command(
            key, action="amend", parent_id=pid, venue=v, symbol=s,
            quantity=_decimal("quantity", body.quantity),
            limit_price=_decimal("limit_price", body.limit_price), end_ts=body.end_ts,
            participation=body.participation, display=_decimal("display", body.display),
        )  # fmt: skip

    @app.post("/v1/algos/{parent_id}/{action}", tags=["trade"], responses=TRADE_ERRORS)
    async def algo_action(
        parent_id: str, action: Literal["pause", "resume", "cancel"], key: Trade,
        venue: str | None = None, symbol: str | None = None,
    ) -> JSONResponse:  # fmt: skip
        """Pause, resume or cancel a parent (cancel also cancels its resting children)."""
        pid = _cid(parent_id)
        v, s = _ref(key, "parent", pid, venue, symbol)
        return await algo_command(key, action=action, parent_id=pid, venue=v, symbol=s)

    # -- WebSocket push ----------------------------------------------------------------------
    def allowed(key: ApiKey, pattern: str) -> str:
        """'' when ``key`` may follow ``pattern``, else why not."""
        parts = pattern.split(".")
        if (
            not pattern
            or any(not p for p in parts)
            or any((">" in p and p != ">") or ("*" in p and p != "*") for p in parts)
            or (">" in parts and parts[-1] != ">")
        ):
            return f"not a subject pattern: {pattern[:100]!r}"
        if parts[0] == "market":
            return "" if "market" in key.scopes else "needs the market scope"
        if parts[0] == "exec" and len(parts) >= 3 and parts[1] in ("evt", "pos"):
            if "account" not in key.scopes:
                return "needs the account scope"
            if parts[2] != subjects.token(key.account):
                return f"only exec.{parts[1]}.{key.account}... for this key"
            return ""
        return "only market.>, exec.evt.<account>.> and exec.pos.<account>"

    @app.websocket("/v1/ws")
    async def ws(sock: WebSocket) -> None:
        """Protocol (docs/api.md): the first message ``{"key": ...}`` (or an Authorization
        header), then ``{"subscribe": [patterns]}`` / ``{"unsubscribe": [...]}``; each frame
        sent is one or more lines ``{"subject":..., "data":...}``."""
        await sock.accept()

        async def fail(reason: str, code: int = 4001) -> None:
            await sock.send_text(orjson.dumps({"error": reason}).decode())
            await sock.close(code, reason[:120])

        auth = sock.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() or sock.headers.get("x-api-key", "")
        try:
            if not token:
                first = orjson.loads(await asyncio.wait_for(sock.receive_text(), 10))
                token = first.get("key", "") if isinstance(first, dict) else ""
        except (TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect, KeyError):
            token = ""
        key = keys.verify(token)
        if key is None:
            await fail('invalid or missing API key (first message {"key": ...})')
            return
        client = hubmod.WsClient(sock.send_text, cfg.ws_queue, cfg.ws_batch)
        pump = asyncio.create_task(client.pump())
        reader = asyncio.create_task(_read(sock, key, client))
        gone = asyncio.create_task(client.gone.wait())
        try:
            await asyncio.wait({pump, reader, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (pump, reader, gone):
                t.cancel()
            await svc.hub.remove(client)
        if client.dropped:
            # after what is already in the socket's buffers: the reason, then the close
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fail(f"dropped: {client.dropped}", hubmod.CLOSE_SLOW), 30)

    async def _read(sock: WebSocket, key: ApiKey, client: hubmod.WsClient) -> None:
        try:
            while True:
                raw = await sock.receive_text()
                try:
                    req = orjson.loads(raw)
                    if not isinstance(req, dict):
                        raise TypeError
                except (orjson.JSONDecodeError, TypeError):
                    await sock.send_text('{"error":"send a JSON object"}')
                    continue
                for pattern in req.get("subscribe") or []:
                    why = allowed(key, str(pattern))
                    if not why and len(client.patterns) >= MAX_PATTERNS:
                        why = f"at most {MAX_PATTERNS} subscriptions per connection"
                    if why:
                        out = {"error": why, "subject": pattern}
                        await sock.send_text(orjson.dumps(out).decode())
                        continue
                    await svc.hub.add(client, str(pattern))
                    await sock.send_text(orjson.dumps({"subscribed": pattern}).decode())
                for pattern in req.get("unsubscribe") or []:
                    await svc.hub.remove(client, str(pattern))
        except WebSocketDisconnect:
            return

    # -- metrics and the console -------------------------------------------------------------
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.mount("/console", StaticFiles(directory=STATIC, html=True), name="console")
    return app
