"""The ``sql.query`` request/reply service (core NATS), served by the sink.

chdb lives inside the sink process, so everyone else reads ClickHouse by asking the sink:
request ``{"sql": "...", "max_rows": 10000}``, reply
``{"columns": [..], "types": [..], "rows": [[..], ..], "truncated": bool}`` or
``{"error": "..."}``. Queries run on the sink's single ClickHouse thread, between inserts.
They run with ``readonly=2`` (reads and SET only): DROP/ALTER/INSERT/CREATE are refused, so
nobody can break the pipeline's tables through this door; change the schema with a new file
in ``infra/clickhouse/`` instead. A reply never exceeds the server's max_payload: rows are
cut (``truncated: true``) until it fits.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from sinks.clickhouse.store import Store

log = logging.getLogger("sinks.clickhouse.sql")

_OPTS = orjson.OPT_SERIALIZE_NUMPY
_HEADROOM = 4096  # protocol framing around the reply body


def encode_reply(res: dict[str, Any], limit: int) -> bytes:
    """JSON reply no larger than ``limit`` bytes, dropping trailing rows if needed."""
    body = orjson.dumps(res, default=str, option=_OPTS)
    rows = res["rows"]
    while len(body) > limit and rows:
        # shrink proportionally (a bit more, so it converges in a step or two)
        keep = min(len(rows) - 1, int(len(rows) * limit / len(body) * 0.9))
        rows = rows[: max(keep, 0)]
        body = orjson.dumps({**res, "rows": rows, "truncated": True}, default=str, option=_OPTS)
    return body


class SqlService:
    def __init__(self, nc: Client, store: Store) -> None:
        self.nc = nc
        self.store = store

    async def handle(self, msg: Msg) -> None:
        try:
            req = orjson.loads(msg.data)
            sql, max_rows = str(req["sql"]), int(req.get("max_rows", 10_000))
        except Exception:
            await msg.respond(orjson.dumps({"error": 'request must be JSON {"sql": "..."}'}))
            return
        try:
            res = await self.store.call(self.store.query, sql, max(max_rows, 0))
            body = encode_reply(res, max(self.nc.max_payload - _HEADROOM, 1024))
        except Exception as exc:
            body = orjson.dumps({"error": str(exc)[:2000]})
        try:
            await msg.respond(body)
        except Exception as exc:  # requester gone or connection closing
            log.warning("sql reply not sent", extra={"error": str(exc)[:200]})
