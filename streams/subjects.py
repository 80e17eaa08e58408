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
# Lifting a halt is a separate subject so that NATS permissions can keep it to operators.
EXEC_RESUME = "exec.ctl.resume"
EXEC_CTL = "exec.ctl.>"

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


def budget_ban(venue: str) -> str:
    """A venue's rate-limit ban, broadcast to every process (streams/bus/budget.py)."""
    return f"budget.ban.{token(venue)}"


BUDGET_BAN_ALL = "budget.ban.>"


def exec_cmd(account: str) -> str:
    return f"exec.cmd.{token(account)}"


def exec_evt(account: str, venue: str, symbol: str) -> str:
    return f"exec.evt.{token(account)}.{token(venue)}.{token(symbol)}"


def exec_pos(account: str) -> str:
    return f"exec.pos.{token(account)}"


def exec_evt_filter(account: str) -> str:
    """Every order update and fill of one account."""
    return f"exec.evt.{token(account)}.>"


def exec_req(account: str) -> str:
    """Core request/reply: an OrderCommand in, a synchronous accept/reject out. Outside
    ``exec.>`` on purpose: a request into a stream's subjects is answered by JetStream's
    PubAck first. The executor records each request's command on ``exec_cmd`` itself."""
    return f"ctl.exec.{token(account)}"


# Live account streams (executor/venues/private): the venue's private frames go to RAW on
# their own venue token, which no collector owns, so no normalizer parser takes them; NATS
# permissions keep them to the executor (publish) and admin (streams/bus/auth.py).
RAW_PRIVATE_ALL = "raw.private.>"
RAW_PRIVATE_PREFIX = "raw.private."  # the normalizer and the sink's raw table skip these


def raw_private(account: str, exchange: str) -> str:
    """One account's private frames (orders, fills, balances) as the venue sent them."""
    return f"raw.private.{token(account)}.{token(exchange)}"


ACCOUNT_DRIFT_ALL = "account.drift.>"


def account_drift(account: str) -> str:
    """Account truth: the venue's balances/positions differ from ours beyond tolerance. Core
    NATS outside ``exec.>``: EXEC's sink stores only the order/fill/position types."""
    return f"account.drift.{token(account)}"


def replay(name: str, original_subject: str) -> str:
    return f"replay.{token(name)}.{original_subject}"


def replay_prefix(name: str) -> str:
    """``replay.<name>.``: what ``replay()`` puts in front of an original subject."""
    return f"replay.{token(name)}."


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
    if len(parts) == 6 and parts[4].isdigit() and parts[5].isdigit():
        del parts[4:]  # stored by a partitioned RAW stream: raw.<v>.<c>.<sym>.<N>.<p>
    if len(parts) != 4 or parts[0] != "raw":
        raise ValueError(f"not a raw subject: {subject!r}")
    return RawSubject(parts[1], parts[2], parts[3])


# Parallel normalizers (docs/scaling.md). With N > 1 partitions the RAW stream rewrites
# ``raw.<venue>.<channel>.<native>`` to ``raw.<venue>.<channel>.<native>.<N>.<p>`` on
# ingest, p = NATS ``partition(N)`` of the venue and symbol tokens: every frame of one
# venue/symbol lands in one partition, in stream order. N is a token of its own so the
# consumers of a later re-partitioning never match frames stored under an earlier one.
# Venue-wide frames (symbol token ``ALL``: instrument lists, connection events) feed
# parser state that every partition needs, so each partition reads all of them and only
# the owner of the frame's partition publishes what they produce.
RAW_VENUE_WIDE = "ALL"


def raw_partition_transform(partitions: int) -> tuple[str, str]:
    """(source, destination) of the RAW stream's subject transform for ``partitions``."""
    w = "{{wildcard(%d)}}"
    dest = f"raw.{w % 1}.{w % 2}.{w % 3}.{partitions}.{{{{partition({partitions},1,3)}}}}"
    return "raw.*.*.*", dest


def raw_partition_filters(partitions: int, partition: int) -> list[str]:
    """Consumer filter subjects of one partition: its own frames plus the venue-wide frames
    of every other partition (disjoint, as JetStream requires of a consumer's filters)."""
    own = f"raw.*.*.*.{partitions}.{partition}"
    others = [
        f"raw.*.*.{RAW_VENUE_WIDE}.{partitions}.{q}" for q in range(partitions) if q != partition
    ]
    return [own, *others]


def raw_partition_suffix(partitions: int, partition: int) -> str:
    """The tail of every stored raw subject that ``partition`` owns."""
    return f".{partitions}.{partition}"


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
# On a replayed message: its stream sequence in the stream it was replayed from (the
# normalizer's frame identity when re-normalizing, so output ids match the original).
H_REPLAY_SEQ = "Jm-Replay-Seq"


def one_line(text: str, limit: int = 1000) -> str:
    """A header value written from free text (a dead letter's reason): one readable line
    (NATS headers are lines), at most ``limit`` characters."""
    return text.replace("\r", " ").replace("\n", " ")[:limit]
