"""Settings: one TOML file plus ``JETMARKET_*`` environment overrides, validated at start.

Env overrides use ``__`` between levels: ``JETMARKET_NATS__URL=nats://h:4222`` or
``JETMARKET_COLLECTOR__BINANCE__SYMBOLS='["BTCUSDT"]'`` (values are parsed as JSON when
they parse, else taken as strings). Unknown keys are errors, so a typo fails at start-up
with the dotted key in the message instead of being silently ignored.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
import orjson

ENV_PREFIX = "JETMARKET_"
CONFIG_ENV = "JETMARKET_CONFIG"
DEFAULT_CONFIG = "jetmarket.toml"
T = TypeVar("T", bound="Section")


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range; the message names the key."""


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A settings section: unknown keys are errors; ``_check`` adds range checks. Sections
    defined outside this file (a venue's, in its collector) are read with ``section()``."""

    def _check(self, prefix: str) -> None:
        """Range checks msgspec's types cannot express; override per section."""


class NatsServerSettings(Section):
    """The embedded nats-server that `make up` and the tests start."""

    host: str = "127.0.0.1"
    port: int = 4222
    monitor_port: int = 8222
    store_dir: str = "./var/nats"
    max_payload: int = 8 * 1024 * 1024


class NatsSettings(Section):
    url: str = "nats://127.0.0.1:4222"
    # Identity (streams/bus/connect.py): user + password_file win; else creds_file (a JWT
    # .creds); else the role's password in credentials_dir, which `make up` fills
    # (streams/bus/auth.py). The role is ``role`` when set (the CLI sets it per command),
    # else the client name before ':' when it names a role (each worker), else default_role.
    user: str | None = None
    password_file: str | None = None
    credentials_dir: str = "./var/nats/creds"
    role: str = ""
    default_role: str = ""
    creds_file: str | None = None
    tls_ca: str | None = None  # set: TLS to the server, verified against this CA file
    tls_cert: str | None = None  # client certificate and key, for servers that verify clients
    tls_key: str | None = None
    tls_hostname: str | None = None  # name on the server certificate, if not the URL's host
    connect_timeout_s: float = 2.0
    server: NatsServerSettings = msgspec.field(default_factory=NatsServerSettings)


class StreamLimits(Section):
    max_age_s: float
    duplicate_window_s: float = 120.0
    # Bytes the stream may hold; the four streams' sum must fit nats-server's store (see
    # StreamsSettings.store_bytes). -1 (unlimited) is refused: a stream without max_bytes
    # fills the whole store and then every stream's publishes fail (503, err 10023).
    max_bytes: int = 1_000_000_000
    # What JetStream does at max_bytes: "old" drops the oldest messages (already consumed
    # in a healthy pipeline), "new" refuses the publish (the writer sees the error). Per
    # stream, documented in docs/security.md (section 4).
    discard: Literal["old", "new"] = "old"
    # Above this fraction of max_bytes the stream gauge's alert fires and the collectors
    # report degraded health.
    warn_fraction: float = 0.9
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"

    def _check(self, prefix: str) -> None:
        if self.max_age_s <= 0:
            raise SettingsError(f"{prefix}.max_age_s must be > 0")
        if self.duplicate_window_s < 0 or self.duplicate_window_s > self.max_age_s:
            raise SettingsError(f"{prefix}.duplicate_window_s must be in [0, max_age_s]")
        if self.replicas not in (1, 3, 5):
            raise SettingsError(f"{prefix}.replicas must be 1, 3 or 5")
        if self.max_bytes < 1_000_000:
            raise SettingsError(f"{prefix}.max_bytes must be >= 1000000 (unlimited is refused)")
        if not 0 < self.warn_fraction < 1:
            raise SettingsError(f"{prefix}.warn_fraction must be in (0, 1)")


class StreamsSettings(Section):
    """The four streams. Defaults fit the 20 GB ``max_file_store`` of infra/nats/*.conf
    with 10% left for replay streams: RAW 11 GB (the source of truth, ~72 h of a busy
    feed), MARKET 4 GB, EXEC 1 GB, DLQ 1 GB, and 1 GB for frames over max_payload stored
    by reference (the JM_FRAMES object store, streams/bus/bigframes.py)."""

    raw: StreamLimits = msgspec.field(
        default_factory=lambda: StreamLimits(max_age_s=72 * 3600, max_bytes=11_000_000_000)
    )
    market: StreamLimits = msgspec.field(
        default_factory=lambda: StreamLimits(max_age_s=7 * 86400, max_bytes=4_000_000_000)
    )
    # EXEC is the order history the executor rebuilds its state from: never drop the old
    # part of it; a full EXEC refuses new events (the executor sees the error) instead.
    exec: StreamLimits = msgspec.field(
        default_factory=lambda: StreamLimits(
            max_age_s=365 * 86400, duplicate_window_s=600, discard="new"
        )
    )
    dlq: StreamLimits = msgspec.field(default_factory=lambda: StreamLimits(max_age_s=30 * 86400))
    # an object store bucket (it refuses a put when full: the collector records the loss);
    # max_age as RAW's so a reference never outlives its frame
    frames: StreamLimits = msgspec.field(
        default_factory=lambda: StreamLimits(max_age_s=72 * 3600, discard="new")
    )
    # nats-server's jetstream max_file_store / max_memory_store (infra/nats/*.conf; 20GB is
    # read as 20 * 1000**3 or 1024**3 depending on the server version: take the smaller).
    # The streams' max_bytes must sum to at most 90% of it (replays need room too).
    store_bytes: int = 20_000_000_000
    memory_store_bytes: int = 512_000_000

    def _check(self, prefix: str) -> None:
        streams = {"raw": self.raw, "market": self.market, "exec": self.exec, "dlq": self.dlq,
                   "frames": self.frames}  # fmt: skip
        stores = (("file", "store_bytes", self.store_bytes),
                  ("memory", "memory_store_bytes", self.memory_store_bytes))  # fmt: skip
        for storage, key, store in stores:
            used = {k: v.max_bytes for k, v in streams.items() if v.storage == storage}
            if sum(used.values()) > 0.9 * store:
                raise SettingsError(
                    f"{prefix}: max_bytes of {'+'.join(used)} = {sum(used.values())} exceed "
                    f"90% of the nats-server {storage} store ({prefix}.{key} = {store})"
                )


class TtlDays(Section):
    """Days ClickHouse keeps the rows of each table, counted from the table's partition time
    (ts_recv for raw_frames, ts_event otherwise); 0 keeps them forever. The sink applies
    these at start (ALTER TABLE ... MODIFY TTL, only when they differ; sinks/clickhouse/ttl.py)
    and whole expired days are dropped in the background. Defaults bound the fast-growing
    tables: raw frames (the bulk, kept 10x RAW's 72 h for re-normalization), book updates,
    BBO, tickers and option greeks 30 days, depth (derived from book updates) 7. Trades,
    candles and the slow tables stay; execution tables (orders, fills, ...) are account
    records and never expire. See docs/operations.md."""

    raw_frames: int = 30
    book_updates: int = 30
    depth: int = 7
    bbo: int = 30
    tickers: int = 30
    trades: int = 0
    candles: int = 0
    funding: int = 0
    open_interest: int = 0
    liquidations: int = 0
    marks: int = 0
    # option greeks come with every option ticker push (many per second on Deribit)
    option_greeks: int = 30
    instruments: int = 0
    gaps: int = 0
    # positioning and volatility: one row per symbol and venue period (5m .. 1d): small
    long_short_ratios: int = 0
    taker_volume: int = 0
    open_interest_hist: int = 0
    volatility_index: int = 0

    def _check(self, prefix: str) -> None:
        for name in self.__struct_fields__:
            if not 0 <= getattr(self, name) <= 36500:
                raise SettingsError(f"{prefix}.{name} must be in [0, 36500] days (0: forever)")


class ClickHouseSettings(Section):
    dsn: str = "chdb:///./var/clickhouse"
    ttl_days: TtlDays = msgspec.field(default_factory=TtlDays)

    def __post_init__(self) -> None:
        # "chdb:///./path" (or "chdb://./path") names a path relative to the working
        # directory (the checkout, for `make`); clickhouse-connect and the sink would read
        # "/./path" from the root, i.e. outside the checkout. Made absolute once, here.
        if self.dsn.startswith(("chdb:///./", "chdb://./")):
            path, sep, query = self.dsn.split("://", 1)[1].lstrip("/").partition("?")
            self.dsn = f"chdb://{Path(path).resolve()}{sep}{query}"

    def _check(self, prefix: str) -> None:
        if not re.match(r"^(chdb|https?|clickhouse)://", self.dsn):
            raise SettingsError(f"{prefix}.dsn must start with chdb://, http:// or https://")


class CollectorSettings(Section):
    """The collector framework's knobs. Each venue's own section (``[collector.<venue>]``,
    ``[collector.ccxt]``) is kept here as given, in ``sections``: its schema, defaults and
    checks live beside the venue's collector (``collectors/<venue>.py``, read through
    ``collectors/config.py``), so adding a venue touches no file of the contract."""

    venues: list[str] = msgspec.field(default_factory=lambda: ["binance"])
    sections: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # Publish an acked barrier after this many core publishes so a dead server is noticed.
    flush_every: int = 2000
    # Frames held until JetStream confirms them (re-sent after an outage); past this the
    # oldest is dropped and recorded as a ``lost`` gap. ~minutes of a busy feed.
    buffer_frames: int = 200_000
    # Largest frame taken from a venue (websockets max_size; REST bodies too). Frames over
    # NATS max_payload up to this go whole into the JM_FRAMES object store by reference;
    # a bigger one ends the WebSocket connection (a reconnect gap) and goes to dlq.collector.
    max_frame_bytes: int = 64 * 1024 * 1024

    def _check(self, prefix: str) -> None:
        if self.flush_every < 1:
            raise SettingsError(f"{prefix}.flush_every must be >= 1")
        if self.buffer_frames < self.flush_every:
            raise SettingsError(f"{prefix}.buffer_frames must be >= flush_every")
        if not 1024 <= self.max_frame_bytes <= 1024**3:
            raise SettingsError(f"{prefix}.max_frame_bytes must be in [1024, 1 GiB]")


class ConsumerSettings(Section):
    durable: str
    batch: int = 2000
    fetch_timeout_s: float = 0.25
    ack_wait_s: float = 30.0

    def _check(self, prefix: str) -> None:
        if self.batch < 1:
            raise SettingsError(f"{prefix}.batch must be >= 1")


class NormalizerSettings(Section):
    consumer: ConsumerSettings = msgspec.field(
        default_factory=lambda: ConsumerSettings(durable="normalizer")
    )
    # Re-normalization (``jetmarket renormalize``): when set, read the raw frames replayed
    # under ``replay.<replay_name>.raw.>`` from that replay's stream and write everything
    # under ``replay.<replay_name>.`` into it; empty means live RAW -> MARKET.
    replay_name: str = ""
    # Parallel normalizers (docs/scaling.md). ``partitions`` > 1 makes the RAW stream append
    # ``.<partitions>.<p>`` to each raw subject (p = NATS partition() of the symbol token),
    # so it must be the same in every component's config (each provisions the stream);
    # ``partition`` is this instance's p, usually set per process via the environment.
    partitions: int = 1
    partition: int = 0

    def _check(self, prefix: str) -> None:
        if not 1 <= self.partitions <= 1024:
            raise SettingsError(f"{prefix}.partitions must be in [1, 1024]")
        if not 0 <= self.partition < self.partitions:
            raise SettingsError(f"{prefix}.partition must be in [0, partitions)")

    def partition_durable(self, partition: int | None = None) -> str:
        """The durable consumer of a partition (this instance's by default); the plain
        ``consumer.durable`` when RAW is not partitioned."""
        p = self.partition if partition is None else partition
        base = self.consumer.durable
        return base if self.partitions <= 1 else f"{base}-p{p}of{self.partitions}"


class SqlSettings(Section):
    """The ``sql.query`` sandbox (sinks/clickhouse/sqlservice.py, docs/clickhouse.md).

    Applied to the query session before ``readonly=1``, so a query cannot change them."""

    max_execution_s: float = 30.0  # also the longest a requester may ask to wait
    max_memory_bytes: int = 1 << 30
    max_result_rows: int = 1_000_000  # a request's max_rows is capped to this
    max_result_bytes: int = 256 << 20
    max_rows_to_read: int = 2_000_000_000
    max_bytes_to_read: int = 100 << 30
    # threads per query: 1 keeps a heavy query on one core, away from the inserts
    max_threads: int = 1
    concurrency: int = 2  # queries run at once (one read-only session each); others queue
    # ``jetmarket sql`` on a ClickHouse server: the read-only user's DSN (docs/clickhouse.md);
    # empty means clickhouse.dsn
    query_dsn: str = ""

    def _check(self, prefix: str) -> None:
        if not 0 < self.max_execution_s <= 3600:
            raise SettingsError(f"{prefix}.max_execution_s must be in (0, 3600]")
        for name in ("max_memory_bytes", "max_result_rows", "max_result_bytes",
                     "max_rows_to_read", "max_bytes_to_read"):  # fmt: skip
            if getattr(self, name) < 1:  # 0 would mean "unlimited" to ClickHouse
                raise SettingsError(f"{prefix}.{name} must be >= 1")
        if not 1 <= self.max_threads <= 64:
            raise SettingsError(f"{prefix}.max_threads must be in [1, 64]")
        if not 1 <= self.concurrency <= 16:
            raise SettingsError(f"{prefix}.concurrency must be in [1, 16]")
        if self.query_dsn and not re.match(r"^https?://", self.query_dsn):
            raise SettingsError(f"{prefix}.query_dsn must start with http:// or https://")


class SinkSettings(Section):
    market: ConsumerSettings = msgspec.field(
        default_factory=lambda: ConsumerSettings(durable="sink-market", batch=5000)
    )
    raw: ConsumerSettings = msgspec.field(
        default_factory=lambda: ConsumerSettings(durable="sink-raw", batch=5000)
    )
    exec: ConsumerSettings = msgspec.field(
        default_factory=lambda: ConsumerSettings(durable="sink-exec", batch=1000)
    )
    store_raw: bool = True
    # Several sink processes sharing the work (docs/scaling.md): each stream is read through
    # one durable ``<durable>-shared`` with a deliver group and explicit acks, and redelivered
    # messages are checked against the table instead of a per-table high-water mark. Needs
    # a ClickHouse server DSN when the instances are separate processes (chdb is one process).
    shared: bool = False
    flush_interval_s: float = 0.5
    # Rows held before an insert; also bounded by the consumer's max_ack_pending (4x batch).
    max_batch_rows: int = 20000
    retry_max_s: float = 10.0
    # Fault hook for tests and drills: while this file exists every insert fails.
    fail_inserts_file: str | None = None
    # A block is split so no insert touches more than this many days (ClickHouse refuses
    # more than max_partitions_per_insert_block = 100 partitions in one insert).
    max_partitions_per_insert: int = 50
    # Tries before a batch that ClickHouse keeps refusing goes to dlq.sink (acked, with a
    # gap row); outages (fault file, connection errors) are retried forever instead.
    insert_tries: int = 8
    sql: SqlSettings = msgspec.field(default_factory=SqlSettings)

    def _check(self, prefix: str) -> None:
        if not 1 <= self.max_partitions_per_insert <= 100:
            raise SettingsError(f"{prefix}.max_partitions_per_insert must be in [1, 100]")
        if self.insert_tries < 1:
            raise SettingsError(f"{prefix}.insert_tries must be >= 1")
        if self.flush_interval_s <= 0:
            raise SettingsError(f"{prefix}.flush_interval_s must be > 0")
        if self.max_batch_rows < 1:
            raise SettingsError(f"{prefix}.max_batch_rows must be >= 1")


class OrderbookSettings(Section):
    depth_levels: int = 20
    # Depth is published (and stored by the sink) at most this often per book.
    depth_interval_ms: int = 100
    # Snapshot requests for an invalid book are sent at most this often.
    snapshot_retry_s: float = 2.0
    max_buffer: int = 20_000

    def _check(self, prefix: str) -> None:
        if not 1 <= self.depth_levels <= 1000:
            raise SettingsError(f"{prefix}.depth_levels must be in [1, 1000]")
        if self.depth_interval_ms < 10:
            raise SettingsError(f"{prefix}.depth_interval_ms must be >= 10")


class InstrumentSpec(Section):
    """Precision of one instrument for the paper venue (ccxt venues load their own)."""

    tick: str = "0.01"  # price increment, a decimal string
    lot: str = "0.00001"  # quantity increment in base units
    min_notional: float = 0.0
    contract_size: float = 1.0


class RiskSettings(Section):
    max_order_notional: float = 1_000_000.0  # quote currency
    # Absolute position per symbol in base units after the order fully fills; "*" = default.
    max_position: dict[str, float] = msgspec.field(default_factory=lambda: {"*": 1_000_000.0})
    max_open_orders: int = 200
    max_orders_per_s: float = 100.0
    allow_symbols: list[str] = msgspec.field(default_factory=list)  # empty: every symbol
    # Price collar per symbol ("*" = default), a fraction of the mark: a limit buy above
    # mark * (1 + collar) or a limit sell below mark * (1 - collar) is refused (a stop-limit's
    # limit is measured from its stop price). 1.0 all but disables it.
    price_collar: dict[str, float] = msgspec.field(default_factory=lambda: {"*": 0.05})
    # Refuse orders on a symbol whose mark (mark price, BBO/depth mid or last trade from
    # market.>) the executor has not seen: without one neither the collar nor the notional
    # at the price an order can really fill at can be checked. Set false only for an
    # account whose venue is not collected; limit orders are then valued at their limit.
    require_mark: bool = True

    def _check(self, prefix: str) -> None:
        if self.max_open_orders < 1 or self.max_orders_per_s <= 0:
            raise SettingsError(f"{prefix}: max_open_orders and max_orders_per_s must be > 0")
        for symbol, collar in self.price_collar.items():
            if not 0 < collar <= 1:
                raise SettingsError(
                    f"{prefix}.price_collar.{symbol} must be a fraction in (0, 1], got {collar}"
                )


class PrivateStreamSettings(Section):
    """Live account streams and account truth of a ccxt account (executor/venues/private,
    docs/execution.md): fills, orders and balances pushed by the venue; polling stays the
    fallback. ``ws`` overrides ccxt's ``urls['api']`` by dotted path (``ws.ws-api.spot``)."""

    enabled: bool = False
    ws: dict[str, str] = msgspec.field(default_factory=dict)
    raw: bool = True  # private frames to RAW on raw.private.<account>.<exchange>
    truth_interval_s: float = 30.0  # venue balances/positions fetched and compared with ours
    balance_tolerance: float = 1e-8  # absolute drift per asset before an account drift event
    position_tolerance: float = 1e-8  # absolute drift per symbol (derivatives)
    halt_on_drift: bool = False  # a drift beyond tolerance also halts the account


class AccountSettings(Section):
    """One trading account: ``exec.cmd.<account>`` goes to this venue.
    ``venue = "paper"`` fills against MARKET data of ``market_venue``; ``venue = "ccxt"``
    trades on ccxt exchange ``exchange`` with keys from the environment variables named by
    ``api_key_env``/``secret_env`` or a JSON ``secrets_file`` (mode 0600)."""

    venue: Literal["paper", "ccxt"] = "paper"
    market_venue: str = "binance"
    exchange: str = ""
    urls: dict[str, str] = msgspec.field(default_factory=dict)  # ccxt urls['api'] overrides
    options: dict[str, Any] = msgspec.field(default_factory=dict)  # ccxt options
    api_key_env: str = ""
    secret_env: str = ""
    secrets_file: str | None = None
    request_timeout_s: float = 10.0
    maker_fee: float = 0.001  # paper fee rates, fraction of notional
    taker_fee: float = 0.001
    # Order timeouts in seconds, most specific key first: "SYMBOL:type", "SYMBOL", "type", "*".
    timeouts: dict[str, float] = msgspec.field(default_factory=lambda: {"market": 30.0})
    instruments: dict[str, InstrumentSpec] = msgspec.field(default_factory=dict)
    # An unknown submission not found at the venue after this long is declared rejected.
    unknown_grace_s: float = 5.0
    # Reconciliation adopts venue orders the executor has no record of when their client
    # order id starts with this prefix (ours, e.g. lost records or a previous instance);
    # empty: nothing is adopted, since any other order on the account may be someone else's.
    client_id_prefix: str = ""
    # How far back the first reconciliation after a start asks for fills.
    reconcile_lookback_s: float = 86400.0
    risk: RiskSettings = msgspec.field(default_factory=RiskSettings)
    private: PrivateStreamSettings = msgspec.field(default_factory=PrivateStreamSettings)

    def _check(self, prefix: str) -> None:
        if self.venue == "ccxt" and not self.exchange:
            raise SettingsError(f"{prefix}.exchange must name a ccxt exchange id")


ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class AlgoSettings(Section):
    """Execution algorithms (executor/algo, docs/execution.md)."""

    max_parents: int = 100  # working parents per account at most
    min_child_interval_s: float = 0.2  # a parent sends (or re-prices) at most this often
    child_timeout_s: float = 30.0  # a resting child (iceberg/peg) is cancelled after this
    end_grace_s: float = 5.0  # after end_ts a TWAP/VWAP/POV parent still unfilled expires
    profile_days: int = 7  # VWAP: trade history the volume profile is drawn from
    profile_timeout_s: float = 3.0  # VWAP: the profile query's budget; flat profile after
    max_parent_id: int = 28  # characters: ``<parent>.<n>`` must stay a 36-character client id
    # smart routing (a parent naming several venues): taker fee per venue (fraction; else
    # the account's taker_fee), adverse drift priced per ms of measured ack latency, and the
    # largest absolute position the account may hold per venue (base units; none if absent)
    venue_fees: dict[str, float] = msgspec.field(default_factory=dict)
    drift_bps_per_ms: float = 0.01
    venue_max_position: dict[str, float] = msgspec.field(default_factory=dict)


class ExecutorSettings(Section):
    # Empty means one paper account named "paper" (a configured set replaces it, since
    # configured dicts merge into the defaults key by key).
    accounts: dict[str, AccountSettings] = msgspec.field(default_factory=dict)
    consumer: ConsumerSettings = msgspec.field(
        default_factory=lambda: ConsumerSettings(
            durable="executor", batch=200, fetch_timeout_s=0.05
        )
    )
    reconcile_interval_s: float = 5.0
    timer_interval_s: float = 0.1
    position_interval_s: float = 1.0
    # Market subjects are read under this prefix: "" live, "replay.<name>." for a backtest.
    market_prefix: str = ""
    algo: AlgoSettings = msgspec.field(default_factory=AlgoSettings)

    def active_accounts(self) -> dict[str, AccountSettings]:
        return self.accounts or {"paper": AccountSettings()}

    def _check(self, prefix: str) -> None:
        for name, account in self.accounts.items():  # dict values are not walked otherwise
            # the account is the subject token of exec.cmd.<account>: it must be one as is
            if not ACCOUNT_NAME.fullmatch(name):
                raise SettingsError(
                    f"{prefix}.accounts.{name}: an account name is 1-64 of A-Z a-z 0-9 _ -"
                )
            _walk_checks(account, f"{prefix}.accounts.{name}")


class BacktestSettings(Section):
    """``jetmarket backtest``: the paper account a strategy trades on and how results are kept.
    Results go to EXEC under account ``<account_prefix><run_id>`` (the sink stores them)."""

    account: AccountSettings = msgspec.field(default_factory=AccountSettings)
    account_prefix: str = "bt-"
    # PnL curve: one position row per symbol every this many seconds of replayed time.
    curve_interval_s: float = 60.0
    publish_batch: int = 1000  # acked EXEC publishes in flight when storing results

    def _check(self, prefix: str) -> None:
        if self.curve_interval_s <= 0 or self.publish_batch < 1:
            raise SettingsError(f"{prefix}: curve_interval_s and publish_batch must be > 0")


class MetricsSettings(Section):
    host: str = "127.0.0.1"
    # 0 disables the endpoint (tests run many workers side by side).
    ports: dict[str, int] = msgspec.field(
        default_factory=lambda: {
            "collector": 9101,
            "normalizer": 9102,
            "sink": 9103,
            "orderbook": 9104,
            "executor": 9105,
        }
    )
    health_interval_s: float = 10.0


class ReplaySettings(Section):
    """``jetmarket replay`` / ``replay``: history back onto the bus or into Python."""

    # JetStream source: messages are put in (ts_recv, stream seq) order within this window
    # of receive time; one stored later than that behind its successors comes out late
    # (deterministically, and counted).
    reorder_window_s: float = 2.0
    # ClickHouse source: rows per query page (a sql.query reply is also capped in bytes).
    page_rows: int = 20_000
    progress: bool = True

    def _check(self, prefix: str) -> None:
        if self.reorder_window_s < 0:
            raise SettingsError(f"{prefix}.reorder_window_s must be >= 0")
        if self.page_rows < 100:
            raise SettingsError(f"{prefix}.page_rows must be >= 100")


class LogSettings(Section):
    """Console logs: level, and format ("auto": human-readable on a terminal, JSON lines
    otherwise; "human" or "json" to force one)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "human", "json"] = "auto"


class ApiSettings(Section):
    """``jetmarket api`` (api/): the HTTP/WebSocket API and live console, and the NATS
    WebSocket listener of the embedded server (docs/api.md)."""

    host: str = "127.0.0.1"
    port: int = 8780
    # started by `make up`; only on loopback unless this is set to "always"
    with_up: Literal["loopback", "always", "never"] = "loopback"
    keys_file: str = "./var/api/keys.json"  # hashed API keys, mode 0600 (`jetmarket api keys`)
    cors_origins: list[str] = msgspec.field(default_factory=list)  # empty: no CORS headers
    rate_per_s: float = 50.0  # requests per second per key (token bucket) unless the key says
    burst: int = 100
    ws_queue: int = 2000  # messages a WebSocket client may fall behind before it is dropped
    ws_batch: int = 500  # messages sent in one WebSocket frame at most
    sql_max_rows: int = 100_000  # rows one API query returns at most (the service caps too)
    sql_timeout_s: float = 30.0
    # the embedded nats-server's WebSocket listener: "auto" = on when nats.server.host is
    # loopback; "on" outside loopback needs nats_ws_tls_cert/key (no plain ws off loopback)
    nats_ws: Literal["auto", "on", "off"] = "auto"
    nats_ws_port: int = 4280
    nats_ws_tls_cert: str | None = None
    nats_ws_tls_key: str | None = None
    nats_ws_origins: list[str] = msgspec.field(default_factory=list)  # empty: any origin

    def _check(self, prefix: str) -> None:
        if self.rate_per_s <= 0 or self.burst < 1 or self.ws_queue < 10 or self.ws_batch < 1:
            raise SettingsError(f"{prefix}: rate_per_s, burst, ws_queue, ws_batch must be > 0")
        if bool(self.nats_ws_tls_cert) != bool(self.nats_ws_tls_key):
            raise SettingsError(f"{prefix}: nats_ws_tls_cert and nats_ws_tls_key go together")


class Settings(Section):
    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    streams: StreamsSettings = msgspec.field(default_factory=StreamsSettings)
    clickhouse: ClickHouseSettings = msgspec.field(default_factory=ClickHouseSettings)
    collector: CollectorSettings = msgspec.field(default_factory=CollectorSettings)
    normalizer: NormalizerSettings = msgspec.field(default_factory=NormalizerSettings)
    sink: SinkSettings = msgspec.field(default_factory=SinkSettings)
    orderbook: OrderbookSettings = msgspec.field(default_factory=OrderbookSettings)
    executor: ExecutorSettings = msgspec.field(default_factory=ExecutorSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    replay: ReplaySettings = msgspec.field(default_factory=ReplaySettings)
    backtest: BacktestSettings = msgspec.field(default_factory=BacktestSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingsError(f"{key}: {'.'.join(path)} is not a section")
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _walk_checks(node: Any, prefix: str) -> None:
    if isinstance(node, Section):
        node._check(prefix)
        for name in node.__struct_fields__:
            _walk_checks(getattr(node, name), f"{prefix}.{name}" if prefix else name)


def _dotted(msg: str) -> str:
    """Turn msgspec's ``- at `$.nats.port``` into ``nats.port``."""
    m = re.search(r"at `\$\.?([^`]*)`", msg)
    key = m.group(1) if m else ""
    field = re.search(r"unknown field `([^`]*)`", msg)
    if field:
        key = f"{key}.{field.group(1)}" if key else field.group(1)
    missing = re.search(r"missing required field `([^`]*)`", msg)
    if missing:
        key = f"{key}.{missing.group(1)}" if key else missing.group(1)
    key = re.sub(r"\[(\d+)\]", r".\1", key)
    return key or "<root>"


def _field_type(root: type, key: str) -> Any:
    """The declared type at ``key`` (as _dotted gives it: ``a.b[...].c``, ``a.0``) under the
    Struct ``root``, stepping through dict values and list items; None when it leads nowhere."""
    node: Any = root
    for part in re.findall(r"\[\.\.\.\]|[^.\[\]]+", key):
        origin = typing.get_origin(node)
        if part == "[...]" and origin is dict:
            node = typing.get_args(node)[1]
        elif part.isdigit() and origin is list:
            node = typing.get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, msgspec.Struct):
            node = typing.get_type_hints(node).get(part)
            if node is None:
                return None
        else:
            return None
    return node


def _invalid(exc: msgspec.ValidationError, root: type, prefix: str = "") -> str:
    """One line for a value msgspec refused: the dotted key, what was wrong and, for a
    choice, the valid values; a list given as plain text gets the JSON form to use."""
    msg = str(exc)
    key = _dotted(msg)
    where = prefix if key == "<root>" else f"{prefix}.{key}" if prefix else key
    shown = where.replace("[...]", ".<name>")
    bad = re.match(r"Invalid enum value (.+?) - at", msg)
    if bad:
        hint = _field_type(root, key)
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        if choices:
            valid = ", ".join(orjson.dumps(c).decode() for c in choices)
            return f"invalid setting {shown}: {bad.group(1)} is not one of {valid}"
    if "Expected `array`, got `str`" in msg:
        env = ENV_PREFIX + "__".join(p.upper() for p in where.split(".") if p != "[...]")
        return (f"invalid setting {shown}: expected a list; in the environment write it as "
                f"JSON, e.g. {env}='[\"a\", \"b\"]'")  # fmt: skip
    return f"invalid setting {shown}: {msg.split(' - at ')[0]}"


def _venue_sections(merged: dict[str, Any]) -> None:
    """Move ``collector.<venue>`` tables into ``collector.sections`` (see CollectorSettings):
    a table there that is not one of the framework's own keys is a venue's section. A
    plain value with an unknown key stays where it is and fails as a typo."""
    col = merged.get("collector")
    if not isinstance(col, dict):
        return
    own = set(CollectorSettings.__struct_fields__)
    venue_keys = [k for k, v in col.items() if k not in own and isinstance(v, Mapping)]
    if venue_keys:
        sections = dict(col.get("sections") or {})
        for k in venue_keys:
            sections[k] = _merge(sections.get(k, {}), col.pop(k))
        col["sections"] = sections


def section(data: Mapping[str, Any], cls: type[T], prefix: str) -> T:
    """A section defined outside this file (e.g. a venue's, in its collector), read and
    checked with the same rules and errors as the core ones; ``prefix`` is its dotted key."""
    try:
        got = msgspec.convert(dict(data), cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_invalid(exc, cls, prefix)) from None
    _walk_checks(got, prefix)
    return got


def from_mapping(data: Mapping[str, Any]) -> Settings:
    # Overlay on the full default tree so a partial section keeps its other defaults.
    merged = _merge(msgspec.to_builtins(Settings()), data)
    _venue_sections(merged)
    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_invalid(exc, Settings)) from None
    _walk_checks(settings, "")
    return settings


def load(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load settings: explicit path, else $JETMARKET_CONFIG, else ./jetmarket.toml if present."""
    env = os.environ if env is None else env
    chosen = path or env.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise SettingsError(f"config file not found: {p}")
        data = _read_toml(p)
    elif Path(DEFAULT_CONFIG).is_file():
        data = _read_toml(Path(DEFAULT_CONFIG))
    return from_mapping(_merge(data, _env_overrides(env)))


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{p}: not valid TOML: {exc}") from None


def to_toml_env(settings: Settings) -> dict[str, str]:
    """Flatten settings into JETMARKET_* env vars (for child processes)."""
    out: dict[str, str] = {}

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, Section):
            for name in node.__struct_fields__:
                walk(getattr(node, name), [*path, name])
        else:
            out[ENV_PREFIX + "__".join(p.upper() for p in path)] = orjson.dumps(
                msgspec.to_builtins(node)
            ).decode()

    walk(settings, [])
    return out
