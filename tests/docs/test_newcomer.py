"""The newcomer path (issue 17): fresh clone -> `make up EMULATOR=1` in a terminal -> the
README's subscribe snippet prints trades from the emulator -> `make sql`, `make book`, the
README's paper order -> Ctrl-C -> no process left, nothing written outside the checkout
(the last three checked when the session's checkout fixture stops, see conftest.py)."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.docs.conftest import Checkout
from tests.docs.readme import Block, blocks, run_block


def _block(checkout: Checkout, marker: str) -> Block:
    found = [b for b in blocks((checkout.path / "README.md").read_text())
             if b.lang == "python" and marker in b.code]  # fmt: skip
    assert len(found) == 1, f"one README python block with {marker!r}"
    return found[0]


def test_subscribe_snippet_prints_trades_from_the_emulator(checkout: Checkout) -> None:
    res = run_block(_block(checkout, "nc.subscribe("), checkout.path, checkout.env)
    assert res.returncode == 0, res.stderr[-2000:]
    trades = [x for x in res.stdout.splitlines() if x.startswith("market.trade.binance.")]
    assert trades and '"type":"trade"' in trades[0], res.stdout[-1000:]


def test_make_sql_and_make_book(checkout: Checkout) -> None:
    sql = checkout.make("sql")  # the Makefile's default query: trades per venue and symbol
    assert sql.returncode == 0 and "BTC-USDT" in sql.stdout, sql.stdout + sql.stderr
    book = checkout.make("book", "VENUE=binance", "SYMBOL=BTC-USDT")
    assert book.returncode == 0 and " valid " in book.stdout, book.stdout + book.stderr
    # an unknown venue and a symbol nobody collects say different things
    bad = checkout.make("book", "VENUE=nosuch", "SYMBOL=BTC-USDT")
    assert bad.returncode != 0 and "unknown venue 'nosuch'" in bad.stderr
    unsynced = checkout.make("book", "VENUE=binance", "SYMBOL=SOL-USDT")
    assert unsynced.returncode != 0 and "no book for binance SOL-USDT" in unsynced.stderr


def test_readme_paper_order_fills(checkout: Checkout) -> None:
    res = run_block(_block(checkout, "OrderCommand("), checkout.path, checkout.env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert '"accepted":true' in res.stdout, res.stdout


def test_second_make_up_refuses_in_one_line(checkout: Checkout) -> None:
    t0 = time.monotonic()
    res = checkout.make("up", "EMULATOR=1", timeout=30)
    assert res.returncode != 0
    lines = [x for x in res.stderr.splitlines() if x.startswith("jetmarket")]
    assert len(lines) == 1 and "already running in this checkout" in lines[0], res.stderr
    assert time.monotonic() - t0 < 10
    # the first one is untouched: still answering
    assert checkout.make("book", "VENUE=binance", "SYMBOL=BTC-USDT").returncode == 0


def test_ctrl_c_on_a_command_is_one_quiet_exit(checkout: Checkout) -> None:
    # a replay at the market's own pace runs for an hour: Ctrl-C it
    argv = [str(checkout.path / ".venv/bin/python"), "-m", "ops", "replay", "--since", "1h",
            "--speed", "1x", "--print", "--no-progress"]  # fmt: skip
    p = subprocess.Popen(argv, cwd=checkout.path, env=checkout.env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(4)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=15)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


def test_startup_took(checkout: Checkout) -> None:
    # make up EMULATOR=1 -> trades in ClickHouse and a valid book (printed for the report)
    print(f"newcomer: make up to data and a valid book in {checkout.started_s:.1f}s")
    assert checkout.started_s < 60
