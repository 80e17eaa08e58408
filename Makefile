# jetmarket: every entry point is a make target. The venv is created on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
# empty: the venues of collector.venues in the configuration (jetmarket.toml); set to override
VENUES ?=
Q      ?= SELECT venue, symbol, count() AS trades FROM trades GROUP BY venue, symbol ORDER BY venue, symbol
FORMAT ?= table
VENUE  ?= binance
SYMBOL ?= BTC-USDT
# temporary files (pytest's tmp_path, the servers of benchmarks, faults and demos) stay inside
# the checkout too: nothing is written outside it
TMP    := $(CURDIR)/var/tmp
export TMPDIR := $(TMP)
_      := $(shell mkdir -p $(TMP))

.PHONY: up down status test lint fmt demo bench faults fuzz nats provision collector normalizer sink orderbook executor book sql config newcomer clean distclean venv

venv: $(STAMP)

# setup.py builds the optional C parts (Binance parsers, columnar replay): rebuilt when a source changes
$(STAMP): pyproject.toml setup.py normalizer/venues/binance/_speedups.c replay/_build.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

## the whole pipeline: embedded nats-server + collector, normalizer, sink, orderbook, executor
## (Ctrl-C stops it). Venues from collector.venues unless VENUES="binance okx" is given;
## EMULATOR=1 collects from the local Binance emulator instead (offline, with data)
up: $(STAMP)
	$(PY) -m ops up $(if $(VENUES),--venues $(VENUES)) $(if $(EMULATOR),--emulator)

down: $(STAMP)
	$(PY) -m ops down

# Two pytest workers, one test file each at a time (module fixtures stay in one process):
# most tests wait on real servers and subprocesses, so two workers on two cores took the
# suite from 15m26s to 8m03s on a clean clone (840 tests). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## offline: the pipeline against the local exchange emulator, then ClickHouse queries
demo: $(STAMP)
	$(PY) -m examples.demo

## offline: emulator -> pipeline -> the example strategy backtested twice on the replayed
## stream (identical digests), results in ClickHouse under bt-<run_id>; see executor/backtest
.PHONY: backtest
backtest: $(STAMP)
	$(PY) -m examples.backtest_demo

## benchmarks, results written to BENCHMARKS.md
bench: $(STAMP)
	$(PY) -m benchmarks.bench

## our Binance parsers vs cryptofeed's handlers on its real recorded frames. cryptofeed goes
## into a throwaway venv, var/bench-cryptofeed (never a dependency: its order_book is GPL),
## and runs in a subprocess of it
.PHONY: bench-cryptofeed
bench-cryptofeed: $(STAMP)
	@test -x var/bench-cryptofeed/bin/python || $(PYTHON) -m venv var/bench-cryptofeed
	@var/bench-cryptofeed/bin/python -c 'import cryptofeed' 2>/dev/null || \
		var/bench-cryptofeed/bin/pip install -q cryptofeed
	$(PY) -m benchmarks.bench_cryptofeed

## fault suite on the full pipeline (kill -9, nats restart, drops/stalls, insert outage); table
faults: $(STAMP)
	$(PY) -m tests.faults
	$(PY) -m tests.faults.storm  # one minute: 4 processes on one REST budget (issue 19)

## the newcomer path end to end (also part of make test): a fresh clone into var/tmp,
## make up EMULATOR=1 in a terminal, every README example against it, Ctrl-C, no process left
newcomer: $(STAMP)
	$(PY) -m pytest -q tests/docs

## fuzz every venue parser and exec commands: >= 100k adversarial cases
fuzz: $(STAMP)
	JM_FUZZ_PROFILE=fuzz $(PY) -m pytest -q -s tests/normalizer/test_fuzz.py

## one worker in the foreground each
nats: $(STAMP)
	$(PY) -m ops nats

## a 3-node JetStream cluster on loopback in the foreground (docs/scaling.md)
cluster: $(STAMP)
	$(PY) -m ops cluster

status: $(STAMP)
	$(PY) -m ops status

provision: $(STAMP)
	$(PY) -m ops provision

collector: $(STAMP)
	$(PY) -m collectors $(VENUES)

normalizer: $(STAMP)
	$(PY) -m normalizer

sink: $(STAMP)
	$(PY) -m sinks clickhouse

orderbook: $(STAMP)
	$(PY) -m orderbook

executor: $(STAMP)
	$(PY) -m executor

## the HTTP/WebSocket API and live console on api.host:api.port (docs/api.md); make up starts
## it too on loopback. Keys: .venv/bin/python -m api keys add NAME --scopes market
.PHONY: api
api: $(STAMP)
	$(PY) -m api

book: $(STAMP)
	$(PY) -m ops book $(VENUE) $(SYMBOL)

## history from a ccxt exchange into RAW, resumable: make backfill VENUE=bitfinex SYMBOL=BTC-USD
##   SINCE=2024-05-01 [UNTIL=2024-05-02] [TIMEFRAME=1m] [TRADES=1] (re-run the same to resume)
.PHONY: backfill
backfill: $(STAMP)
	$(if $(SINCE),,$(error SINCE is required, e.g. make backfill SINCE=2024-05-01T00:00:00Z))
	$(PY) -m collectors.backfill --venue $(VENUE) --symbol $(SYMBOL) --since $(SINCE) \
		$(if $(UNTIL),--until $(UNTIL)) --timeframe $(or $(TIMEFRAME),1m) $(if $(TRADES),--trades)

sql: $(STAMP)
	$(PY) -m ops sql --format $(FORMAT) "$(Q)"

## the effective configuration and where each value came from (default, file, env)
config: $(STAMP)
	$(PY) -m ops config

## history back onto the bus: make replay SINCE=1h [UNTIL=...] [SUBJECTS='market.trade.>']
##   [SPEED=10x] [NAME=bt1: republish under replay.bt1.>] [FILE=rec.jmrec: a recording onto RAW]
.PHONY: replay record renormalize
replay: $(STAMP)
	$(PY) -m ops replay $(if $(SINCE),--since $(SINCE)) $(if $(UNTIL),--until $(UNTIL)) \
		$(if $(SUBJECTS),--subjects $(foreach s,$(SUBJECTS),'$(s)')) --speed $(or $(SPEED),max) \
		$(if $(NAME),--name $(NAME)) $(if $(FILE),--from-file $(FILE))

## raw frames of a range into a compressed file: make record FILE=rec.jmrec SINCE=1h [UNTIL=...]
record: $(STAMP)
	$(if $(FILE),,$(error FILE is required, e.g. make record FILE=rec.jmrec SINCE=1h))
	$(PY) -m ops record $(FILE) $(if $(SINCE),--since $(SINCE)) $(if $(UNTIL),--until $(UNTIL))

## RAW through the normalizer into replay.<PREFIX>.>, compared with MARKET:
##   make renormalize SINCE=2h [UNTIL=...] [PREFIX=renorm1]
renormalize: $(STAMP)
	$(if $(SINCE),,$(error SINCE is required, e.g. make renormalize SINCE=2h))
	$(PY) -m ops renormalize --since $(SINCE) $(if $(UNTIL),--until $(UNTIL)) \
		$(if $(PREFIX),--prefix $(PREFIX)) --compare

## removes var/ (NATS store and credentials, ClickHouse data, logs, backfill checkpoints,
## temp files: everything the pipeline wrote) and the lint/test caches; keeps .venv
clean:
	rm -rf var .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) *.egg-info

## ClickHouse tables and JetStream streams into backups/<UTC time> (kept by make clean), or
## DIR=...; with the embedded ClickHouse stop make up first (chdb: one process per path)
.PHONY: backup restore
backup: $(STAMP)
	$(PY) -m ops backup $(DIR)

## the newest backup under backups/ (or DIR=...) back; REPLACE=1 overwrites existing data
restore: $(STAMP)
	$(PY) -m ops restore $(if $(REPLACE),--replace) $(DIR)
