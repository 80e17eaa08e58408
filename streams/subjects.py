"""Every NATS subject in jetmarket is spelled here and nowhere else.

Tokens are sanitised because NATS reserves '.', '*', '>' and whitespace; a native
symbol such as Kraken's ``BTC/USD`` is legal, but a stray dot would split a token.
"""

from __future__ import annotations

from typing import NamedTuple

RAW_ALL = "raw.>"
MARKET_ALL = "market.>"
EXEC_ALL = "exec.>"
DLQ_ALL = "dlq.>"
SQL_QUERY = "sql.query"
# Every worker answers a request on this subject with its health line (``jetmarket status``).
STATUS_QUERY = "status.query"
EXEC_HALT = "exec.ctl.halt"

_BAD = str.maketrans({".": "_", "*": "_", ">": "_", " ": "_", "\t": "_"})


def token(value: str) -> str:
    """Make one subject token out of an arbitrary string."""
    if not value:
        raise ValueError("empty subject token")
    return value.translate(_BAD)


def raw(venue: str, channel: str, native_symbol: str) -> str:
    return f"raw.{token(venue)}.{token(channel)}.{token(native_symbol)}"


def market(msg_type: str, venue: str, symbol: str) -> str:
    return f"market.{token(msg_type)}.{token(venue)}.{token(symbol)}"


def market_filter(msg_type: str = "*", venue: str = "*", symbol: str = "*") -> str:
    return f"market.{msg_type}.{venue}.{symbol}"


def dlq(component: str) -> str:
    return f"dlq.{token(component)}"


def ctl_snapshot(venue: str, symbol: str) -> str:
    return f"ctl.snapshot.{token(venue)}.{token(symbol)}"


def ctl_snapshot_filter(venue: str) -> str:
    return f"ctl.snapshot.{token(venue)}.*"


def book_get(venue: str, symbol: str) -> str:
    return f"book.get.{token(venue)}.{token(symbol)}"


BOOK_GET_ALL = "book.get.>"


def exec_cmd(account: str) -> str:
    return f"exec.cmd.{token(account)}"


def exec_evt(account: str, venue: str, symbol: str) -> str:
    return f"exec.evt.{token(account)}.{token(venue)}.{token(symbol)}"


def exec_pos(account: str) -> str:
    return f"exec.pos.{token(account)}"


def replay(name: str, original_subject: str) -> str:
    return f"replay.{token(name)}.{original_subject}"


class RawSubject(NamedTuple):
    venue: str
    channel: str
    symbol: str


class MarketSubject(NamedTuple):
    msg_type: str
    venue: str
    symbol: str


def parse_raw(subject: str) -> RawSubject:
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "raw":
        raise ValueError(f"not a raw subject: {subject!r}")
    return RawSubject(parts[1], parts[2], parts[3])


def parse_market(subject: str) -> MarketSubject:
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "market":
        raise ValueError(f"not a market subject: {subject!r}")
    return MarketSubject(parts[1], parts[2], parts[3])


# Message headers (NATS headers are case-sensitive strings).
H_RECV_NS = "Jm-Recv-Ns"
H_CONN = "Jm-Conn"
H_MSG_ID = "Nats-Msg-Id"
H_REASON = "Jm-Reason"
H_SOURCE = "Jm-Source-Subject"
