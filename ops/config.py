"""``jetmarket config``: the effective configuration and where each value comes from, and
the commented example file (``jetmarket.example.toml``) generated from the settings classes.

The example is generated, never written by hand, so it cannot fall behind the code:
``tests/ops/test_config.py`` fails when the checked-in file differs from ``example()``.
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import orjson

from streams import settings as S
from streams.bus import logs

EXAMPLE_FILE = "jetmarket.example.toml"

# Sections whose class has no docstring: what they are for, in one or two lines. The test
# fails on a section with neither, so a new section cannot arrive undocumented.
SECTION_HELP = {
    "nats": "How every process reaches NATS, and as whom (make up writes the credentials).",
    "clickhouse": "Where the sink stores everything: chdb:///./var/clickhouse (in-process, in\n"
    "the checkout) or a server, e.g. http://user:password@host:8123/jetmarket.",
    "normalizer": "RAW -> MARKET. Several instances: partitions = N, each partition = i.",
    "sink": "MARKET/RAW/EXEC -> ClickHouse; sql.query limits under [sink.sql].",
    "orderbook": "Validated L2 books: depth/BBO publishing and snapshot retries.",
    "executor": 'Order execution. Without [executor.accounts.*] one paper account "paper".',
    "metrics": "Prometheus endpoints (0 disables one) and the health line interval.",
    "streams.raw": "RAW: every exchange frame untouched (the source of truth).",
    "streams.market": "MARKET: normalized messages.",
    "streams.exec": "EXEC: order commands, events, positions (never drops old records).",
    "streams.dlq": "DLQ: what a worker could not process, with the reason.",
    "streams.frames": "JM_FRAMES: frames over NATS max_payload, stored by reference.",
    "normalizer.consumer": "The normalizer's durable consumer on RAW.",
    "sink.market": "The sink's durable consumer on MARKET.",
    "sink.raw": "The sink's durable consumer on RAW (sink.store_raw).",
    "sink.exec": "The sink's durable consumer on EXEC.",
    "executor.consumer": "The executor's durable consumer on EXEC commands.",
    "collector": "The collector framework; each venue's own section follows as\n"
    "[collector.<venue>] (symbols in the venue's native format).",
    "collector.bybit": "Bybit v5 (one category per ws_url: spot, linear, inverse). Native\n"
    "symbols: BTCUSDT; channels: publicTrade, orderbook.<depth>, tickers, kline.<interval>,\n"
    "allLiquidation.",
    "collector.coinbase": "Coinbase Advanced Trade. Native symbols: BTC-USD (product ids);\n"
    "channels: market_trades, level2, ticker, candles.",
    "collector.deribit": "Deribit v2. Native symbols: BTC-PERPETUAL, BTC-27DEC24,\n"
    "BTC-27DEC24-100000-C; channels: trades, book, ticker, quote, chart_trades.",
    "collector.kraken": "Kraken WebSocket v2. Native symbols: BTC/USD; channels: trade, book,\n"
    "ticker, ohlc.",
    "collector.okx": "OKX v5. Native symbols: BTC-USDT (spot), BTC-USDT-SWAP (perpetual),\n"
    "BTC-USD-241227 (futures); channels: trades, books, tickers, bbo-tbt, candle1m, ...",
}
# the same, for a class that appears under several paths
CLASS_HELP = {
    "RiskSettings": "Pre-trade risk checks of this account: notional, position, price collar\n"
    "(fraction from the mark), order count and rate, symbol allow-list.",
}
# dict-of-section fields: the name an example entry is shown under
EXAMPLE_KEYS = {"accounts": "paper", "exchanges": "kraken", "instruments": "BTC-USDT"}
# values never printed by `jetmarket config` (paths and variable names are fine)
SECRET_KEYS = {"password", "secret", "api_key", "apikey", "token", "passphrase", "private_key"}


# -- the example file ---------------------------------------------------------------------
def venue_sections() -> list[tuple[str, type[S.Section]]]:
    """(venue, its settings class) for every collector venue, plus ccxt."""
    from collectors.__main__ import settings_class, venues

    out = [(v, settings_class(v)) for v in venues()]
    from collectors.ccxt_poller import CcxtSettings

    out.append(("ccxt", CcxtSettings))
    return out


def _toml(v: Any) -> str:
    """A value as TOML (strings in JSON quoting, which TOML basic strings accept)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v == math.floor(v) and abs(v) < 1e15:
        return f"{v:.1f}"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return orjson.dumps(v).decode()
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        items = [(k, x) for k, x in v.items() if x is not None]  # TOML has no null
        return "{" + ", ".join(f"{_key(k)} = {_toml(x)}" for k, x in items) + "}"
    raise TypeError(f"no TOML form for {v!r}")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else orjson.dumps(k).decode()


def _doc(cls: type, path: str) -> str:
    """A section's description: SECTION_HELP, else its class docstring rewrapped."""
    if path in SECTION_HELP:
        return SECTION_HELP[path]
    if cls.__name__ in CLASS_HELP:
        return CLASS_HELP[cls.__name__]
    return "\n".join(_wrap(" ".join((cls.__doc__ or "").split()), 88))


def _wrap(text: str, width: int) -> Iterator[str]:
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            yield line
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        yield line


def _section_dict_type(cls: type, name: str) -> type | None:
    """The Section class of a ``dict[str, Section]`` field, if it is one."""
    hint = typing.get_type_hints(cls).get(name)
    if typing.get_origin(hint) is dict:
        val = typing.get_args(hint)[1]
        if isinstance(val, type) and issubclass(val, S.Section):
            return val
    return None


def _declared_default(value: Any) -> Any:
    """The default as declared: settings make a relative chdb path absolute against the
    working directory, which the example must not show."""
    if isinstance(value, str) and value.startswith(f"chdb://{Path.cwd()}/"):
        return "chdb:///./" + value[len(f"chdb://{Path.cwd()}/") :]
    return value


def _example_instance(cls: type[S.Section]) -> S.Section | None:
    try:
        return cls()
    except TypeError:  # required fields (e.g. symbols of a ccxt exchange)
        if "symbols" in cls.__struct_fields__:
            return cls(symbols=["BTC/USD"])  # type: ignore[call-arg]
        return None


def _emit(
    node: S.Section, path: str, out: list[str], skip: frozenset[str] = frozenset(),
    example: bool = False,
) -> None:  # fmt: skip
    cls = type(node)
    out.append("")
    if example:
        out.append(f"# An example entry (there is none by default): {path.rsplit('.', 1)[1]}")
    for line in _doc(cls, path).splitlines():
        out.append(f"# {line}".rstrip())
    out.append(f"#[{path}]")
    subs: list[tuple[str, S.Section, bool]] = []
    for name in cls.__struct_fields__:
        if name in skip:
            continue
        value = getattr(node, name)
        if isinstance(value, S.Section):
            subs.append((f"{path}.{name}", value, False))
            continue
        entry = _section_dict_type(cls, name)
        if entry is not None and not value:
            example = _example_instance(entry)
            if example is not None:
                key = EXAMPLE_KEYS.get(name, "name")
                subs.append((f"{path}.{name}.{key}", example, True))
            continue
        value = _declared_default(value)
        if value is None:
            out.append(f"# {name}: unset by default")
            continue
        builtin = msgspec.to_builtins(value)
        out.append(f"#{_key(name)} = {_toml(builtin)}")
    for sub_path, sub, is_example in subs:
        _emit(sub, sub_path, out, example=is_example)


def example() -> str:
    """The commented example configuration: every section, every key at its default. Every
    setting line is commented out (``#key = value``), so a copy changes nothing until a
    line is uncommented."""
    out = [
        "# jetmarket configuration: copy to ./jetmarket.toml (or point $JETMARKET_CONFIG at a",
        "# copy) and uncomment what you change. Every key is shown at its default.",
        "# Environment variables override the file: JETMARKET_<SECTION>__<KEY>, '__' between",
        "# levels, values parsed as JSON when they parse, e.g.",
        "#   JETMARKET_LOG__LEVEL=DEBUG",
        '#   JETMARKET_COLLECTOR__VENUES=\'["binance", "okx"]\'',
        '#   JETMARKET_COLLECTOR__BINANCE__SYMBOLS=\'["BTCUSDT", "SOLUSDT"]\'',
        "# `jetmarket config` prints the effective values and where each one came from.",
        "# Secrets (NATS password, exchange keys) never go here: files with mode 0600 or the",
        "# environment (see password_file, api_key_env, secret_env, secrets_file).",
        f"# Generated by `jetmarket config --example > {EXAMPLE_FILE}` (a test compares).",
    ]
    defaults = S.Settings()
    for name in S.Settings.__struct_fields__:
        node = getattr(defaults, name)
        if name == "collector":
            _emit(node, name, out, skip=frozenset({"sections"}))
            for venue, cls in venue_sections():
                inst = _example_instance(cls)
                if inst is not None:
                    _emit(inst, f"collector.{venue}", out)
        else:
            _emit(node, name, out)
    return "\n".join(out) + "\n"


# -- the effective configuration ------------------------------------------------------------
def _lookup(tree: Mapping[str, Any], path: list[str]) -> bool:
    """Whether ``tree`` sets ``path`` (or a table above it as a whole value)."""
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _masked(key: str, value: Any) -> Any:
    if key.lower() in SECRET_KEYS:
        return logs.MASK
    if isinstance(value, str):
        return logs.redact(value)
    if isinstance(value, dict):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked("", v) for v in value]
    return value


def effective(env: Mapping[str, str] | None = None) -> str:
    """Every setting with its effective value and its source: default, file or env."""
    env = os.environ if env is None else env
    chosen = env.get(S.CONFIG_ENV) or (S.DEFAULT_CONFIG if Path(S.DEFAULT_CONFIG).is_file() else "")
    file_tree = S._read_toml(Path(chosen)) if chosen else {}
    env_tree = S._env_overrides(env)
    settings = S.load(env=env)
    # the venue sections are kept as given: show each collected one read with its class
    from collectors.config import venue_settings

    classes = dict(venue_sections())
    named = {v.split(":")[0] for v in settings.collector.venues} | set(settings.collector.sections)
    venues = {
        v: venue_settings(settings, v, classes[v])  # type: ignore[type-var]
        for v in sorted(named)
        if v in classes
    }
    width = 44
    lines = [
        "# effective configuration: defaults < "
        + (f"file {chosen}" if chosen else "no file (./jetmarket.toml absent)")
        + " < environment (JETMARKET_*)",
    ]

    def walk(node: S.Section, path: list[str], extra: Mapping[str, S.Section] = {}) -> None:
        tables: list[tuple[list[str], S.Section]] = []
        if path:
            lines.append(f"\n[{'.'.join(path)}]")
        for k in type(node).__struct_fields__:
            v = getattr(node, k)
            if path == ["collector"] and k == "sections":
                continue
            if isinstance(v, S.Section):
                tables.append(([*path, k], v))
                continue
            if isinstance(v, dict) and v and all(isinstance(x, S.Section) for x in v.values()):
                tables += [([*path, k, name], x) for name, x in v.items()]
                continue
            where = (
                "env"
                if _lookup(env_tree, [*path, k])
                else "file"
                if _lookup(file_tree, [*path, k])
                else "default"
            )
            shown = _toml(_masked(k, msgspec.to_builtins(v))) if v is not None else "(unset)"
            lines.append(f"{_key(k)} = {shown}".ljust(width) + f"  # {where}")
        tables += [([*path, name], x) for name, x in extra.items()]
        for sub_path, sub in tables:
            walk(sub, sub_path, venues if sub_path == ["collector"] else {})

    walk(settings, [])
    return "\n".join(lines)
