"""Fuzz every venue parser (and exec commands, when the executor validates them) with
adversarial frames; strategies and the property live in fuzz/fuzzers.py.

CI runs the ``ci`` profile (80 examples per test); ``make fuzz`` runs the ``fuzz`` profile
(``JM_FUZZ_PROFILE=fuzz``: 4000 per test, over 100k cases in total)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import fuzzers as fuzz
from normalizer.core import Normalizer
from normalizer.venues.base import Out
from streams import schemas, subjects

TOKENS = sorted(fuzz.venue_parsers())
KINDS: dict[str, Callable[[str], st.SearchStrategy[fuzz.Case]]] = {
    "wire": fuzz.wire_frames,
    "mutated": fuzz.mutated_frames,
    "bytes": fuzz.byte_frames,
    "crossed": fuzz.crossed_frames,
}
CASES = {"n": 0}


def _run(token: str, strategy: st.SearchStrategy[fuzz.Case]) -> None:
    norm = Normalizer()

    @fuzz.profile()
    @given(strategy)
    def prop(case: fuzz.Case) -> None:
        CASES["n"] += 1
        fuzz.check(norm, token, case)

    prop()


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("token", TOKENS)
def test_parser_survives_adversarial_frames(token: str, kind: str) -> None:
    if kind in ("mutated",) and not fuzz.seeds(token):
        pytest.skip(f"no seed frames for {token} (no emulator generator, no recorded traffic)")
    _run(token, KINDS[kind](token))


def test_every_registered_parser_and_channel_is_fuzzed() -> None:
    assert {"binance", "okx"} <= set(TOKENS)
    for token in TOKENS:
        assert fuzz.channels(token), f"{token} declares no channels"
        assert fuzz.decoder_types(token) or fuzz.seeds(token), f"nothing to shape {token} frames"


# -- the property itself can fail ----------------------------------------------------------
def test_check_flags_non_finite_negative_and_misrouted_output() -> None:
    trade = schemas.Trade(venue="binance", symbol="BTC-USDT", ts_event=1, ts_recv=1,
                          id="1", price=float("nan"), size=1.0, side="buy")  # fmt: skip
    subject = subjects.market("trade", "binance", "BTC-USDT")
    with pytest.raises(fuzz.Finding, match="price"):
        fuzz.check_out(Out(subject, "x", schemas.encode(trade)))
    neg = msgspec.structs.replace(trade, price=1.0, size=-1.0)
    with pytest.raises(fuzz.Finding, match="size"):
        fuzz.check_out(Out(subject, "x", schemas.encode(neg)))
    ok = msgspec.structs.replace(trade, price=1.0)
    with pytest.raises(fuzz.Finding, match="subject"):
        fuzz.check_out(Out(subject.replace("BTC", "ETH"), "x", schemas.encode(ok)))
    assert fuzz.check_out(Out(subject, "x", schemas.encode(ok))) == ok


def test_check_flags_a_parser_exception() -> None:
    class Boom:
        venue = "boom"
        channels = {"trade": "trade"}

        def parse(self, frame: Any) -> list[Out]:
            raise KeyError("p")

    norm = Normalizer()
    norm.parsers["boom"] = Boom()  # type: ignore[assignment]
    with pytest.raises(fuzz.Finding, match="parser error"):
        fuzz.check(norm, "boom", ("trade", "X", b"{}"))
    assert "unknown" in str(fuzz.check(Normalizer(), "binance", ("nope", "BTCUSDT", b"{}")))


def test_encode_writes_bare_tokens() -> None:
    assert fuzz.encode({"p": fuzz.raw_token("NaN"), "q": 2**70}) == (
        b'{"p":NaN,"q":1180591620717411303424}'
    )


# -- exec commands -------------------------------------------------------------------------
def _exec_outputs_decode(rec: fuzz.Recorder, before: int, data: bytes) -> None:
    for _, out, _ in rec.published[before:]:
        try:
            msg = schemas.decode_exec(out)  # every EXEC message re-decodes
        except msgspec.DecodeError as exc:
            if any(k in str(exc) for k in fuzz.KNOWN_EXEC_FINDINGS):
                continue
            raise fuzz.Finding(f"EXEC message does not decode ({exc}): {out[:300]!r}") from None
        for name in ("quantity", "price", "filled", "avg_price", "size", "fee"):
            v = getattr(msg, name, None)
            assert v is None or math.isfinite(v), (name, v, data)


def test_exec_commands_accepted_or_rejected_with_a_reason() -> None:
    if fuzz.exec_engine() is None:
        pytest.skip("HOOK: no executor package (see fuzz.exec_engine)")
    loop = asyncio.new_event_loop()
    seen = {"accepted": 0, "rejected": 0, "undecodable": 0}

    @fuzz.profile()
    @given(st.lists(fuzz.order_commands(), min_size=1, max_size=4))
    def prop(commands: list[bytes]) -> None:
        made = fuzz.exec_engine()  # a fresh account per example: the sequence is its state
        assert made is not None
        engine, rec = made
        for data in commands:
            CASES["n"] += 1
            try:
                cmd = schemas.decode_exec(data)
            except msgspec.DecodeError as exc:  # the worker dead-letters it with this reason
                assert str(exc)
                seen["undecodable"] += 1
                continue
            if not isinstance(cmd, schemas.OrderCommand):
                continue
            before = len(rec.published)
            try:
                reply = loop.run_until_complete(engine.handle(cmd))
            except ValueError as exc:
                if any(k in str(exc) for k in fuzz.KNOWN_EXEC_FINDINGS):
                    continue
                raise
            assert reply.accepted or reply.reason, f"rejected without a reason: {data!r}"
            seen["accepted" if reply.accepted else "rejected"] += 1
            _exec_outputs_decode(rec, before, data)
        for _, reason in rec.dead:
            assert reason, commands

    try:
        prop()
    finally:
        loop.close()
    assert seen["accepted"] and seen["rejected"] and seen["undecodable"], seen


# executor regressions found by the fuzzer: a quantity string overflowing a float was
# rejected with an order_update carrying quantity inf (JSON null, undecodable); a new order
# for venue "" raised ValueError("empty subject token") while emitting its rejection
HUGE_QTY = (
    b'{"type":"order_command","account":"paper","venue":"binance","symbol":"BTC-USDT",'
    b'"ts_event":1,"ts_recv":1,"action":"new","client_order_id":"c1","side":"buy",'
    b'"order_type":"limit","quantity":"' + b"9" * 400 + b'","price":"65000"}'
)
EMPTY_VENUE = HUGE_QTY.replace(b'"binance"', b'""').replace(b"9" * 400, b"0.001")


@pytest.mark.parametrize("data", [HUGE_QTY, EMPTY_VENUE], ids=["huge-quantity", "empty-venue"])
def test_exec_regressions(data: bytes) -> None:
    made = fuzz.exec_engine()
    if made is None:
        pytest.skip("no executor package")
    engine, rec = made
    reply = asyncio.run(engine.handle(schemas.decode_exec(data)))
    assert not reply.accepted and reply.reason
    _exec_outputs_decode(rec, 0, data)


# -- regressions found by the fuzzer -------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "channel", "native", "data"),
    [
        # deep nesting raised RecursionError through the parsers (caught only by the core's
        # catch-all): now a rejection with a reason
        ("binance", "trade", "BTCUSDT", b"[" * 50_000 + b"]" * 50_000),
        ("okx", "trades", "BTC-USDT", b'{"data":' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
        ("bybit_linear", "publicTrade", "BTCUSDT", b"[" * 50_000 + b"]" * 50_000),
    ],
)
def test_regressions(token: str, channel: str, native: str, data: bytes) -> None:
    res = fuzz.check(Normalizer(), token, (channel, native, data))
    assert isinstance(res, str) and res  # a dead letter with its reason


DEEP = b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"


# deribit (found by make fuzz, fixed by its owner): a ticker whose 24 h volume or open
# interest is negative was published as is
_TICKER = (
    b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL'
    b'.raw","data":{"timestamp":1626993723632,"stats":{"volume":VOL,"low":1.0,"high":2.0},'
    b'"state":"open","open_interest":OI,"mark_price":30000.0,"last_price":30000.0,'
    b'"instrument_name":"BTC-PERPETUAL","index_price":30000.0,"best_bid_price":29999.0,'
    b'"best_bid_amount":10.0,"best_ask_price":30001.0,"best_ask_amount":10.0,'
    b'"current_funding":0.0,"funding_8h":0.0}}}'
)
NEGATIVE_VOLUME = {
    "deribit": [
        ("BTC-PERPETUAL", _TICKER.replace(b"VOL", b"-1").replace(b"OI", b"10.0")),
        ("BTC-PERPETUAL", _TICKER.replace(b"VOL", b"1").replace(b"OI", b"-10.0")),
    ],
}


def _not_utf8(token: str) -> list[bytes]:
    """Seed frames with a byte that is not UTF-8 at the start of each string value."""
    out = []
    for _, _, data in fuzz.seeds(token)[:20]:
        at = data.find(b'":"')
        while at > 0 and len(out) < 200:
            out.append(data[: at + 3] + b"\xf3" + data[at + 4 :])
            at = data.find(b'":"', at + 3)
    return out


@pytest.mark.parametrize("token", sorted(fuzz.venue_parsers()))
def test_hostile_encodings_are_dead_letters_with_a_reason(token: str) -> None:
    """50k-deep nesting and bytes that are not UTF-8, on every channel of every venue: a
    dead letter saying which (normalizer.core turns RecursionError/UnicodeDecodeError from
    any parser into a reason), never the catch-all for a parser bug (deribit, coinbase and
    kraken raised through it before)."""
    norm = Normalizer()
    reasons: set[str] = set()
    for channel in fuzz.channels(token):
        for data in (DEEP, *_not_utf8(token)):
            res = norm.normalize(subjects.raw(token, channel, fuzz.natives(token)[0]), data,
                                 {subjects.H_RECV_NS: "1"}, 1)  # fmt: skip
            if not isinstance(res, list):
                assert res.reason and not res.reason.startswith(fuzz.PARSER_ERROR), res.reason
                reasons.add(res.reason)
    assert reasons, f"{token}: nothing was rejected"


@pytest.mark.parametrize("case", NEGATIVE_VOLUME["deribit"], ids=["volume", "open-interest"])
def test_deribit_negative_ticker_sizes_rejected(case: tuple[str, bytes]) -> None:
    if "deribit" not in fuzz.venue_parsers():
        pytest.skip("deribit parser not present")
    res = fuzz.check(Normalizer(), "deribit", ("ticker", *case))
    assert isinstance(res, str) and res  # a dead letter with its reason


def test_zz_cases_counted() -> None:
    # not an assertion on speed: proves the property ran many times in this session
    if CASES["n"]:
        assert CASES["n"] >= len(TOKENS) * fuzz.examples()
        print(f"\nfuzz: {CASES['n']} cases through the parsers and the property")
