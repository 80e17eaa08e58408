"""HTML reports of research backtests (plotly, MIT): one page per run, one per sweep.

A run's page: the metrics table, then equity, drawdown, position, fills on the price, and
PnL per day. A sweep's page: a heat map of a metric over the first two grid parameters
(one map per value of any further ones) and the table of runs, each linking to its page.
plotly.js is written once beside the pages (``plotly.min.js``), so a page is small and
opens offline. Every metric cell carries the exact value in ``data-value`` (the text is
rounded for reading), which is what the browser test compares with ``backtest_results``.
A long run's lines are thinned for plotting to ~``MAX_POINTS`` (every bucket's first, last,
lowest and highest point) and its fill markers to ``MAX_MARKERS`` a side; the numbers are
computed from every point.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor.backtest.research import METRICS, RunResult

LABELS = {
    "total_return": "return", "sharpe": "Sharpe", "sortino": "Sortino",
    "max_drawdown": "max drawdown", "turnover": "turnover", "fees": "fees",
    "hit_rate": "hit rate", "pnl": "PnL", "funding": "funding paid", "fills": "fills",
}  # fmt: skip
PERCENT = {"total_return", "max_drawdown", "hit_rate"}
CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:right}th{text-align:left}h1{font-size:20px}.plot{height:320px}"""


def fmt(name: str, value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if name in PERCENT:
        return f"{value * 100:.2f}%"
    if name == "fills":
        return f"{value:,.0f}"
    return f"{value:,.4f}"


def _dt(ns: Sequence[int]) -> list[str]:
    return [datetime.fromtimestamp(t / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") for t in ns]


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style><script src='plotly.min.js'></script></head>"
            f"<body>{body}</body></html>")  # fmt: skip


def _figure(fig: Any, div_id: str) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True},
                           default_height="320px"))  # fmt: skip


def _plotly_js(out: Path) -> None:
    js = out / "plotly.min.js"
    if not js.exists():
        from plotly.offline import get_plotlyjs

        js.write_text(get_plotlyjs())


# Points a run page plots per line, fill markers per side: a page stays a few MB and opens
# in a browser whatever the run (a market maker's day can have millions of curve points).
# The metrics, the drawdown and the PnL per day are computed from every point.
MAX_POINTS = 20_000
MAX_MARKERS = 5_000


def keep_points(values: Sequence[float], limit: int = MAX_POINTS) -> list[int]:
    """Indices of ``values`` to plot, at most ~``limit``: all of them when they fit, else per
    bucket its first, last, lowest and highest point, so peaks, troughs and steps stay where
    they are (an every-k-th sample could drop the worst drawdown)."""
    n = len(values)
    if n <= limit:
        return list(range(n))
    size = -(-n * 4 // limit)  # 4 points a bucket
    out: list[int] = []
    for a in range(0, n, size):
        b = min(n, a + size)
        chunk = values[a:b]
        lo = a + min(range(b - a), key=chunk.__getitem__)
        hi = a + max(range(b - a), key=chunk.__getitem__)
        out += sorted({a, lo, hi, b - 1})
    return out


def _every(items: list[Any], limit: int) -> list[Any]:
    """At most ``limit`` of ``items``, evenly spread (fill markers)."""
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def metrics_table(r: RunResult) -> str:
    rows = "".join(
        f"<tr><th>{LABELS[k]}</th><td data-metric='{k}' data-value='{r.metrics[k]!r}'>"
        f"{fmt(k, r.metrics[k])}</td></tr>"
        for k in METRICS
    )
    extra = (f"<tr><th>events</th><td>{r.messages:,}</td></tr>"
             f"<tr><th>events/s</th><td>{r.events_per_s:,.0f}</td></tr>"
             f"<tr><th>digest</th><td><code>{r.digest[:16]}</code></td></tr>")  # fmt: skip
    return f"<table id='metrics'>{rows}{extra}</table>"


def run_report(r: RunResult, out: str | Path) -> Path:
    """Write ``<out>/<run_id>.html``; returns its path."""
    import plotly.graph_objects as go

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    _plotly_js(outdir)
    c = r.curve
    if not c.get("ts"):
        raise ValueError("run result has no curve (run with keep=True)")
    eq = c["equity"]
    peak, dd = -math.inf, []
    for e in eq:
        peak = max(peak, e)
        dd.append(e / peak - 1.0 if peak > 0 else 0.0)

    def line(values: Sequence[float]) -> dict[str, list[Any]]:
        keep = keep_points(values)
        return {"x": _dt([c["ts"][i] for i in keep]), "y": [values[i] for i in keep]}

    figs = []
    f = go.Figure(go.Scatter(**line(eq), mode="lines", name="equity"))
    f.update_layout(title="Equity", margin={"t": 40, "b": 30})
    figs.append(("equity", f))
    f = go.Figure(go.Scatter(**line(dd), mode="lines", fill="tozeroy",
                             name="drawdown"))  # fmt: skip
    f.update_layout(title="Drawdown", yaxis_tickformat=".3%", margin={"t": 40, "b": 30})
    figs.append(("drawdown", f))
    f = go.Figure(go.Scatter(**line(c["position"]), mode="lines", line_shape="hv",
                             name="position"))  # fmt: skip
    f.update_layout(title=f"Position ({r.symbols[0]})", margin={"t": 40, "b": 30})
    figs.append(("position", f))
    f = go.Figure(go.Scatter(**line(c["mark"]), mode="lines", name="price",
                             line={"color": "#888"}))  # fmt: skip
    main = [fl for fl in r.fills if fl["symbol"] == r.symbols[0]]
    for side, color, sym in (("buy", "#1a9850", "triangle-up"), ("sell", "#d73027",
                                                                 "triangle-down")):  # fmt: skip
        pts = _every([fl for fl in main if fl["side"] == side], MAX_MARKERS)
        f.add_trace(go.Scatter(x=_dt([p["ts"] for p in pts]), y=[p["price"] for p in pts],
                               mode="markers", name=side,
                               marker={"color": color, "symbol": sym, "size": 9}))  # fmt: skip
    f.update_layout(title=f"Fills on price ({r.symbols[0]})", margin={"t": 40, "b": 30})
    figs.append(("fills", f))
    day_end: dict[str, float] = {}
    for t, e in zip(c["ts"], eq, strict=True):
        day_end[datetime.fromtimestamp(t / 1e9, UTC).strftime("%Y-%m-%d")] = e
    days, prev, pnl = list(day_end), eq[0], []
    for d in days:
        pnl.append(day_end[d] - prev)
        prev = day_end[d]
    f = go.Figure(go.Bar(x=days, y=pnl, name="PnL per day"))
    f.update_layout(title="PnL per day (UTC)", xaxis_type="category", margin={"t": 40, "b": 30})
    figs.append(("daily", f))
    params = " ".join(f"{k}={v}" for k, v in sorted(r.params.items()))
    head = (f"<h1>Backtest {html.escape(r.run_id)}: {html.escape(r.strategy)}</h1>"
            f"<p>{html.escape(params)}<br>{html.escape(r.venue)} "
            f"{html.escape(', '.join(r.symbols))}"
            f" &middot; {_dt([r.first_ns])[0]} .. {_dt([r.last_ns])[0]} UTC &middot; source "
            f"{html.escape(r.source)}</p>")  # fmt: skip
    body = head + metrics_table(r) + "".join(_figure(fg, f"plot-{name}") for name, fg in figs)
    path = outdir / f"{r.run_id}.html"
    path.write_text(_page(f"backtest {r.run_id}", body))
    return path


def sweep_report(
    results: list[RunResult], grid: list[dict[str, Any]], out: str | Path, sweep_id: str,
    metric: str = "sharpe",
) -> Path:  # fmt: skip
    """Write ``<out>/sweep-<sweep_id>.html``: heat maps of ``metric`` and the runs' table."""
    import plotly.graph_objects as go

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    _plotly_js(outdir)
    names = list(grid[0])
    body = [f"<h1>Sweep {html.escape(sweep_id)}: {html.escape(results[0].strategy)}, "
            f"{LABELS.get(metric, metric)} over {', '.join(names)}</h1>"]  # fmt: skip
    if len(names) >= 2:
        xn, yn, rest = names[0], names[1], names[2:]
        groups: dict[tuple, list[tuple[dict[str, Any], RunResult]]] = defaultdict(list)
        for g, r in zip(grid, results, strict=True):
            groups[tuple(g[k] for k in rest)].append((g, r))
        for i, (fixed, items) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
            xs = sorted({g[xn] for g, _ in items})
            ys = sorted({g[yn] for g, _ in items})
            z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
            for g, r in items:
                z[ys.index(g[yn])][xs.index(g[xn])] = r.metrics[metric]
            f = go.Figure(go.Heatmap(x=[str(v) for v in xs], y=[str(v) for v in ys], z=z,
                                     colorscale="RdYlGn", colorbar={"title": metric},
                                     texttemplate="%{z:.3f}"))  # fmt: skip
            sub = ", ".join(f"{k}={v}" for k, v in zip(rest, fixed, strict=True))
            f.update_layout(title=f"{metric} {sub}".strip(), xaxis_title=xn, yaxis_title=yn,
                            margin={"t": 40, "b": 40})  # fmt: skip
            body.append(_figure(f, f"heatmap-{i}"))
    else:
        f = go.Figure(go.Bar(x=[str(g[names[0]]) for g in grid],
                             y=[r.metrics[metric] for r in results]))  # fmt: skip
        f.update_layout(title=metric, xaxis_title=names[0], margin={"t": 40, "b": 40})
        body.append(_figure(f, "heatmap-0"))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    head += "".join(f"<th>{LABELS[k]}</th>" for k in METRICS) + "<th>report</th>"
    rows = []
    for g, r in zip(grid, results, strict=True):
        cells = "".join(f"<td>{html.escape(str(g[n]))}</td>" for n in names)
        cells += "".join(f"<td data-metric='{k}' data-value='{r.metrics[k]!r}'>"
                         f"{fmt(k, r.metrics[k])}</td>" for k in METRICS)  # fmt: skip
        link = Path(r.report).name if r.report else ""
        cells += f"<td><a href='{html.escape(link)}'>{html.escape(r.run_id)}</a></td>"
        rows.append(f"<tr data-run='{html.escape(r.run_id)}'>{cells}</tr>")
    body.append(f"<table id='runs'><tr>{head}</tr>{''.join(rows)}</table>")
    path = outdir / f"sweep-{sweep_id}.html"
    path.write_text(_page(f"sweep {sweep_id}", "".join(body)))
    return path
