"""The console in a real browser: Debian's headless Chromium (selenium + chromium-driver)
opens it while the emulator drives the pipeline, and the test reads the DOM: the book ladder
equals ``book.get``, the feed table lists every running channel, a SQL query returns rows,
and a paper order placed from the page shows in open orders.

Outside CI the test skips when Chromium is missing (``apt-get install chromium
chromium-driver``); in CI (.ci/run installs them) it must run. ``JM_API_SCREENSHOTS=1``
writes the screenshots to docs/ (committed: docs/console.png, docs/console-sql.png)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.api.pipeline import ApiPipeline

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _driver_paths() -> tuple[str, str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        why = "chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return chrome, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chrome, driver_path = _driver_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1500", "--disable-extensions"):  # fmt: skip
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield d
    finally:
        d.quit()


def _get(p: ApiPipeline, path: str, who: str = "trader") -> Any:
    req = urllib.request.Request(p.url + path, headers={"Authorization": f"Bearer {p.tokens[who]}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return orjson.loads(r.read())


def _until(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the DOM changes under us: try again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.3)
    raise AssertionError(f"not in time: {what} (last: {last!r})")


def test_console_in_chromium(browser: Any, pipe: ApiPipeline, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    d.get(f"{pipe.url}/console/#key={pipe.tokens['trader']}")
    _until(lambda: d.find_element(By.ID, "conn").text == "live", 30, "WebSocket live")
    assert "key=" not in d.current_url, "the key must leave the address bar"

    # feed table: every channel RAW receives (per /v1/feeds) has a row
    def feeds_shown() -> Any:
        want = {f"{f['venue']}.{f['channel']}" for f in _get(pipe, "/v1/feeds")["feeds"]
                if f["rate"] > 0}  # fmt: skip
        rows = {tr.get_attribute("data-feed")
                for tr in d.find_elements(By.CSS_SELECTOR, "#feeds tbody tr")}  # fmt: skip
        return want if {"binance.trade", "binance.depth"} <= want <= rows else None

    _until(feeds_shown, 60, "feed table rows")

    # the book ladder equals book.get at the same sequence
    def ladder_matches() -> Any:
        table = d.find_element(By.ID, "ladder")
        seq = table.get_attribute("data-seq")
        bids = [float(td.text) for td in table.find_elements(By.CSS_SELECTOR, "td.bid-price")
                if td.text]  # fmt: skip
        asks = [float(td.text) for td in table.find_elements(By.CSS_SELECTOR, "td.ask-price")
                if td.text]  # fmt: skip
        market = d.find_element(By.ID, "market").get_attribute("value")
        book = _get(pipe, f"/v1/book/{market}?levels=12")
        if not seq or int(seq) != book["seq"] or not bids:
            return None
        assert bids == [b[0] for b in book["bids"]][: len(bids)]
        assert asks == [a[0] for a in book["asks"]][: len(asks)]
        return int(seq)

    seq1 = _until(ladder_matches, 60, "ladder == book.get")
    _until(lambda: (s := ladder_matches()) and s > seq1, 30, "the ladder updates")
    _until(lambda: d.find_elements(By.CSS_SELECTOR, "#tape tbody tr"), 30, "trades tape")

    # SQL box
    d.find_element(By.ID, "sql-run").click()
    _until(lambda: d.find_elements(By.CSS_SELECTOR, "#sql-result tbody tr"), 30, "SQL rows")
    assert "rows" in d.find_element(By.ID, "sql-status").text

    # a paper order from the page shows in open orders
    bbo = _until(lambda: _get(pipe, "/v1/bbo"), 30, "a BBO")
    market = d.find_element(By.ID, "market").get_attribute("value")
    bid = next(b["bid_price"] for b in bbo if f"{b['venue']}/{b['symbol']}" == market)
    price = d.find_element(By.ID, "o-price")
    price.clear()
    price.send_keys(f"{bid * 0.95:.2f}")

    def placed() -> Any:
        d.find_element(By.ID, "o-place").click()
        time.sleep(1.0)
        text = d.find_element(By.ID, "order-status").text
        return text if text.startswith("placed") else None

    status = _until(placed, 60, "order accepted")  # instruments/marks may need a moment
    cid = status.split()[1].rstrip(":")
    _until(lambda: d.find_elements(By.CSS_SELECTOR, f'#orders tr[data-cid="{cid}"]'), 20,
           "order in open orders")  # fmt: skip
    assert any(o["client_order_id"] == cid for o in _get(pipe, "/v1/orders"))
    _until(lambda: d.find_elements(By.CSS_SELECTOR, "#gaps-timeline"), 5, "gaps panel")
    _until(lambda: d.find_element(By.ID, "candles").get_attribute("data-count"), 30, "candles")

    out = DOCS if os.environ.get("JM_API_SCREENSHOTS") else tmp_path
    d.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    d.save_screenshot(str(out / "console.png"))
    d.execute_script("document.getElementById('sql').scrollIntoView()")
    time.sleep(0.5)
    d.save_screenshot(str(out / "console-sql.png"))

    # 10k msg/s for the chosen symbol straight onto the bus: the page takes every message
    # and stays responsive, redrawing at most ~4 times a second
    venue, symbol = market.split("/")

    def counters() -> tuple[int, int]:
        got = d.execute_script("return [state.msgs, state.renders]")
        return int(got[0]), int(got[1])

    msgs0, renders0 = counters()
    t0 = time.monotonic()
    sent = asyncio.run(_burst(pipe, venue, symbol, price=bid, n=20_000, rate=10_000))
    _until(lambda: counters()[0] - msgs0 >= sent, 30, "every burst message reached the page")
    elapsed = time.monotonic() - t0
    t1 = time.monotonic()
    d.execute_script("return document.getElementById('tape').rows.length")
    assert time.monotonic() - t1 < 1.0, "the page answers within a second under load"
    msgs1, renders1 = counters()
    assert renders1 - renders0 <= elapsed / 0.25 + 8, (renders1 - renders0, elapsed)
    assert msgs1 - msgs0 >= sent
    print(f"burst: {sent} msgs in {elapsed:.1f}s, {renders1 - renders0} renders")


async def _burst(pipe: ApiPipeline, venue: str, symbol: str, *, price: float, n: int,
                 rate: float) -> int:  # fmt: skip
    """``n`` trades at ``rate`` on market.trade.<venue>.<symbol>, published as admin (at the
    bid: they cross no resting paper buy below it)."""
    from streams import schemas, subjects
    from streams.bus.connect import connect

    nc = await connect(pipe.settings.nats, "test")
    subject = subjects.market("trade", venue, symbol)
    t0 = time.monotonic()
    try:
        for i in range(0, n, 100):
            now = time.time_ns()
            for k in range(i, min(n, i + 100)):
                t = schemas.Trade(venue=venue, symbol=symbol, ts_event=now, ts_recv=now,
                                  id=f"burst-{now}-{k}", price=price, size=0.001,
                                  side="sell")  # fmt: skip
                await nc.publish(subject, schemas.encode(t))
            ahead = (i + 100) / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await nc.flush()
    finally:
        await nc.close()
    return n
