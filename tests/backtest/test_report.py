"""``jetmarket backtest --grid`` end to end: the sweep runs in processes, one row per run in
ClickHouse ``backtest_results``, and its HTML reports opened in a real headless Chromium
(Debian's, through chromedriver): the pages render, every plot has data, and every number
in the metrics tables equals the results table's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from executor.backtest.report import fmt
from executor.backtest.research import METRICS, read_results
from streams.settings import to_toml_env
from tests.backtest.test_sim import market
from tests.conftest import make_settings
from tests.replay.test_columnar import store_market
from tests.workers import ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def browser() -> Any:
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing in CI (.ci/run installs them)")
        pytest.skip("no chromium + chromedriver here: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,2200",
              "--disable-dev-shm-usage"):  # fmt: skip
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)


PLOTS = """return Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => [
  el.id, el.querySelectorAll('.main-svg').length,
  (el.data || []).map(t => ((t.z || t.y || []).length))])"""
CELLS = """return Array.from(document.querySelectorAll('td[data-metric]')).map(td => [
  td.closest('tr').dataset.run || '', td.dataset.metric, td.dataset.value, td.innerText])"""


def test_sweep_reports_in_chromium(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "nats://127.0.0.1:1")  # the research path needs no NATS
    store_market(settings.clickhouse.dsn, market(n=2000))
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "ops", "backtest", "--strategy", "examples/sma_cross.py:SmaCross",
           "--venue", "binance", "--symbol", "BTC-USDT-PERP", "--symbol", "BTC-USDT",
           "--grid", "fast=2,3 slow=5,8", "--param", "bar_s=0.5", "--run-id", "sw1",
           "--curve-interval-s", "1", "--latency-ms", "2", "--workers", "2",
           "--report-dir", str(reports), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    out = subprocess.run(cmd, env=to_toml_env(settings), cwd=ROOT, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    page = Path(out.stdout.strip().splitlines()[-1].removeprefix("report "))
    assert page == (reports / "sweep-sw1.html").resolve() and page.is_file()
    rows = {r["run_id"]: r for r in read_results(settings.clickhouse.dsn, sweep_id="sw1")}
    assert len(rows) == 4 and all(r["fills"] > 0 for r in rows.values())

    drv = browser()
    try:
        drv.set_page_load_timeout(20)
        drv.get(page.as_uri())
        plots = drv.execute_script(PLOTS)
        assert len(plots) == 1 and plots[0][1] >= 1 and plots[0][2] == [2]  # 2x2 heat map
        cells = drv.execute_script(CELLS)
        assert len(cells) == 4 * len(METRICS)
        for run, metric, value, text in cells:
            assert float(value) == rows[run][metric], (run, metric)
            assert text == fmt(metric, rows[run][metric])
        # one run's page, through the sweep page's link
        run_id = sorted(rows)[0]
        drv.find_element("link text", run_id).click()
        assert drv.title == f"backtest {run_id}"
        plots = drv.execute_script(PLOTS)
        ids = [p[0] for p in plots]
        assert ids == ["plot-equity", "plot-drawdown", "plot-position", "plot-fills", "plot-daily"]
        assert all(p[1] >= 1 and p[2] and all(n > 0 for n in p[2][:1]) for p in plots), plots
        # price line, then buy and sell markers: every fill (the strategy trades one symbol)
        assert sum(plots[3][2][1:]) == rows[run_id]["fills"]
        for _, metric, value, text in drv.execute_script(CELLS):
            assert float(value) == rows[run_id][metric] and text == fmt(metric, float(value))
        shot = os.environ.get("JETMARKET_REPORT_SCREENSHOT") or str(tmp_path / "report.png")
        assert drv.save_screenshot(shot) and Path(shot).stat().st_size > 10_000
    finally:
        drv.quit()


def test_a_run_with_a_million_points_makes_a_page_a_browser_opens(tmp_path: Path) -> None:
    """A market maker's day: 1M curve points and 200k fills. The page plots at most
    ~MAX_POINTS a line and MAX_MARKERS fills a side, keeps every bucket's extremes (the worst
    drawdown and the highest equity are on the page), and stays a few MB."""
    import random

    from executor.backtest.report import MAX_MARKERS, MAX_POINTS, keep_points, run_report
    from executor.backtest.research import RunResult

    rnd = random.Random(1)
    n, t0 = 1_000_000, 1_760_000_000 * 10**9
    eq, e = [], 100_000.0
    for _ in range(n):
        e += rnd.gauss(0, 5)
        eq.append(e)
    ts = [t0 + i * 10**8 for i in range(n)]
    pos = [float(i % 7) for i in range(n)]
    curve = {"ts": ts, "equity": eq, "position": pos, "mark": eq, "grid": [True] * n}
    fills = [{"ts": t0 + i * 5 * 10**8, "symbol": "BTC-USDT", "side": ("buy", "sell")[i % 2],
              "price": 1.0, "size": 1.0} for i in range(200_000)]  # fmt: skip
    r = RunResult("big1", "MM", {}, "binance", ["BTC-USDT"], "clickhouse", n, 10.0, t0,
                  curve["ts"][-1], dict.fromkeys(METRICS, 0.0), "0" * 64, curve, fills)  # fmt: skip
    page = run_report(r, tmp_path)
    assert page.stat().st_size < 8_000_000, page.stat().st_size
    keep = keep_points(eq)
    assert len(keep) <= MAX_POINTS + 4 and keep == sorted(set(keep))
    assert eq.index(min(eq)) in keep and eq.index(max(eq)) in keep
    assert keep[0] == 0 and keep[-1] == n - 1
    text = page.read_text()
    assert text.count("triangle-up") >= 1 and len(fills) // 2 > MAX_MARKERS
    assert keep_points([1.0, 2.0, 3.0]) == [0, 1, 2]  # small runs: every point
