// jetmarket console: plain JavaScript, written for this project (no library).
// Data arrives as fast as the bus sends it (WebSocket /v1/ws, polls of /v1/*); the page is
// redrawn at most every RENDER_MS, only the panels whose data changed, so a bus at
// 10k msg/s costs one array push per message and a few redraws per second.
"use strict";

const RENDER_MS = 250;
const TAPE = 15;
const LEVELS = 12;
const $ = (id) => document.getElementById(id);

const state = {
  key: localStorage.getItem("jm_key") || "",
  me: null,
  market: localStorage.getItem("jm_market") || "",
  trades: [],       // newest last
  book: null,
  feeds: null,
  gaps: [],
  orders: [],
  positions: [],
  algos: [],
  candles: [],
  msgs: 0,
  renders: 0,
  dirty: new Set(),
  ws: null,
};

// -- HTTP ------------------------------------------------------------------------------
async function api(path, opts = {}) {
  const headers = Object.assign({ "Authorization": "Bearer " + state.key }, opts.headers || {});
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (!r.ok) {
    let detail = r.statusText;
    try { const b = await r.json(); detail = b.detail || b.reason || JSON.stringify(b); } catch (e) { /* not JSON */ }
    const err = new Error(`${r.status}: ${detail}`);
    err.status = r.status;
    throw err;
  }
  return r;
}
const json = async (path, opts) => (await api(path, opts)).json();

function mark(...panels) { for (const p of panels) state.dirty.add(p); }

// -- rendering (throttled) -------------------------------------------------------------
let lastRender = 0;
function frame(t) {
  if (state.dirty.size && t - lastRender >= RENDER_MS) {
    lastRender = t;
    const dirty = new Set(state.dirty);
    state.dirty.clear();
    state.renders++;
    if (dirty.has("book")) renderBook();
    if (dirty.has("tape")) renderTape();
    if (dirty.has("feeds")) renderFeeds();
    if (dirty.has("gaps")) renderGaps();
    if (dirty.has("orders")) renderOrders();
    if (dirty.has("positions")) renderPositions();
    if (dirty.has("algos")) renderAlgos();
    if (dirty.has("candles")) renderCandles();
    $("stats").textContent = `${state.msgs} msgs, ${state.renders} renders`;
  }
  requestAnimationFrame(frame);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function fill(tbody, rows, make) {
  const out = document.createDocumentFragment();
  for (const r of rows) { const tr = document.createElement("tr"); make(tr, r); out.appendChild(tr); }
  tbody.replaceChildren(out);
}
const num = (v, d) => (v === null || v === undefined) ? "" : (d === undefined ? String(v) : Number(v).toFixed(d));
const clock = (ns) => new Date(Number(ns) / 1e6).toISOString().slice(11, 23);

function renderBook() {
  const b = state.book;
  const tbody = $("ladder").tBodies[0];
  if (!b) { tbody.replaceChildren(); $("book-state").textContent = "no book yet"; return; }
  $("book-state").textContent = `${b.valid ? "valid" : "RESYNCING"} seq ${b.seq}`;
  $("ladder").dataset.seq = b.seq;
  const n = Math.min(LEVELS, Math.max(b.bids.length, b.asks.length));
  const rows = [];
  for (let i = 0; i < n; i++) rows.push([b.bids[i], b.asks[i]]);
  fill(tbody, rows, (tr, [bid, ask]) => {
    cell(tr, bid ? String(bid[1]) : "", "bid");
    cell(tr, bid ? String(bid[0]) : "", "bid bid-price");
    cell(tr, ask ? String(ask[0]) : "", "ask ask-price");
    cell(tr, ask ? String(ask[1]) : "", "ask");
  });
}

function renderTape() {
  const rows = state.trades.slice(-TAPE).reverse();
  fill($("tape").tBodies[0], rows, (tr, t) => {
    cell(tr, clock(t.ts_event)); cell(tr, t.side, t.side); cell(tr, String(t.price), t.side); cell(tr, String(t.size));
  });
}

function spark(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 18");
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 120},${17 - (v / max) * 16}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.appendChild(line);
  return svg;
}

function renderFeeds() {
  const f = state.feeds;
  if (!f) return;
  fill($("feeds").tBodies[0], f.feeds, (tr, r) => {
    tr.dataset.feed = `${r.venue}.${r.channel}`;
    cell(tr, r.venue); cell(tr, r.channel); cell(tr, num(r.rate, 1));
    cell(tr, "").appendChild(spark(r.spark));
    if (!r.raw) { cell(tr, "(events)", "muted"); }
    else {
      const age = r.age_s === null ? "never" : `${num(r.age_s, 1)}s ago`;
      cell(tr, age, r.age_s === null || r.age_s > 60 ? "dead" : (r.age_s > 10 ? "stale" : ""));
    }
    cell(tr, String(r.frames)); cell(tr, String(r.gaps), r.gaps ? "stale" : ""); cell(tr, String(r.reconnects));
  });
  $("workers").textContent = "workers: " + f.workers.map((w) => `${w.worker} ${w.state}`).join(" · ");
}

function renderGaps() {
  fill($("gaps").tBodies[0], state.gaps.slice(0, 20), (tr, g) => {
    cell(tr, clock(g.ts_recv)); cell(tr, g.venue); cell(tr, g.symbol); cell(tr, g.reason, "stale"); cell(tr, (g.detail || "").slice(0, 60));
  });
  // timeline of the last hour: one tick per gap
  const c = $("gaps-timeline"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.strokeStyle = "#263140"; ctx.beginPath(); ctx.moveTo(0, 25); ctx.lineTo(c.width, 25); ctx.stroke();
  const now = Date.now() * 1e6, span = 3600e9;
  ctx.fillStyle = "#d29922";
  for (const g of state.gaps) {
    const x = c.width - ((now - g.ts_recv) / span) * c.width;
    if (x >= 0) ctx.fillRect(x - 1, 10, 3, 30);
  }
  ctx.fillStyle = "#7d8a99"; ctx.fillText("-60 min", 2, 48); ctx.fillText("now", c.width - 24, 48);
}

function renderOrders() {
  fill($("orders").tBodies[0], state.orders, (tr, o) => {
    tr.dataset.cid = o.client_order_id;
    cell(tr, o.client_order_id); cell(tr, o.symbol); cell(tr, o.side, o.side); cell(tr, String(o.quantity));
    cell(tr, num(o.price)); cell(tr, String(o.filled)); cell(tr, o.state);
    const b = document.createElement("button");
    b.textContent = "cancel";
    b.onclick = () => cancel(o);
    cell(tr, "").appendChild(b);
  });
}

function renderPositions() {
  fill($("positions").tBodies[0], state.positions, (tr, p) => {
    cell(tr, p.venue); cell(tr, p.symbol); cell(tr, String(p.size)); cell(tr, num(p.avg_price, 2));
    cell(tr, num(p.unrealized_pnl, 4)); cell(tr, num(p.realized_pnl, 4)); cell(tr, num(p.fees, 4));
  });
}

function renderAlgos() {
  fill($("algos").tBodies[0], state.algos, (tr, a) => {
    cell(tr, a.parent_id); cell(tr, a.algo); cell(tr, a.symbol); cell(tr, a.side, a.side);
    cell(tr, String(a.quantity)); cell(tr, String(a.filled)); cell(tr, a.state);
    const b = document.createElement("button");
    b.textContent = "cancel";
    b.onclick = async () => {
      try { await api(`/v1/algos/${encodeURIComponent(a.parent_id)}/cancel?venue=${a.venue}&symbol=${a.symbol}`, { method: "POST" }); }
      catch (e) { $("order-status").textContent = e.message; }
      pollAccount();
    };
    cell(tr, "").appendChild(b);
  });
}

function renderCandles() {
  const c = $("candles"), ctx = c.getContext("2d"), rows = state.candles.slice(-60);
  ctx.clearRect(0, 0, c.width, c.height);
  if (!rows.length) { ctx.fillStyle = "#7d8a99"; ctx.fillText("no candles yet", 10, 20); return; }
  const hi = Math.max(...rows.map((r) => r.high)), lo = Math.min(...rows.map((r) => r.low));
  const y = (p) => 10 + (hi === lo ? 0.5 : (hi - p) / (hi - lo)) * (c.height - 30);
  const w = c.width / 60;
  rows.forEach((r, i) => {
    const x = i * w + w / 2, up = r.close >= r.open;
    ctx.strokeStyle = ctx.fillStyle = up ? "#3fbf7f" : "#e5534b";
    ctx.beginPath(); ctx.moveTo(x, y(r.high)); ctx.lineTo(x, y(r.low)); ctx.stroke();
    const top = y(Math.max(r.open, r.close)), h = Math.max(1, Math.abs(y(r.open) - y(r.close)));
    ctx.fillRect(x - w * 0.35, top, w * 0.7, h);
  });
  ctx.fillStyle = "#7d8a99";
  ctx.fillText(String(hi), 2, 10); ctx.fillText(String(lo), 2, c.height - 12);
  $("candles").dataset.count = rows.length;
}

// -- data ------------------------------------------------------------------------------
function market() { const [venue, symbol] = (state.market || "/").split("/"); return { venue, symbol }; }

async function pollBook() {
  const { venue, symbol } = market();
  if (!symbol) return;
  try { state.book = await json(`/v1/book/${venue}/${symbol}?levels=${LEVELS}`); }
  catch (e) { state.book = null; }
  mark("book");
}

async function pollFeeds() {
  try { state.feeds = await json("/v1/feeds"); mark("feeds"); } catch (e) { /* shown by conn */ }
}

async function pollGaps() {
  try { state.gaps = await json("/v1/gaps?limit=200"); mark("gaps"); } catch (e) { /* none */ }
}

async function pollCandles() {
  const { venue, symbol } = market();
  if (!symbol) return;
  try {
    const r = await json(`/v1/history/ohlcv?venue=${venue}&symbol=${symbol}&interval=1m&limit=1000&start=${Date.now() - 3600e3}`);
    state.candles = r.rows;
    mark("candles");
  } catch (e) { /* sink not ready */ }
}

async function pollAccount() {
  if (!state.me || !state.me.scopes.includes("account")) return;
  try {
    state.orders = await json("/v1/orders");
    state.positions = await json("/v1/positions");
    state.algos = await json("/v1/algos");
    mark("orders", "positions", "algos");
  } catch (e) { /* executor away */ }
}

async function loadMarkets() {
  const sel = $("market");
  let names = [];
  try {
    const bbo = await json("/v1/bbo");
    names = [...new Set(bbo.map((b) => `${b.venue}/${b.symbol}`))].sort();
  } catch (e) { /* none yet */ }
  if (!names.length) { setTimeout(loadMarkets, 1000); return; }
  if (!names.includes(state.market)) state.market = names[0];
  sel.replaceChildren(...names.map((n) => { const o = document.createElement("option"); o.textContent = n; return o; }));
  sel.value = state.market;
  subscribe();
  pollBook(); pollCandles();
}

// -- WebSocket push --------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/v1/ws`);
  state.ws = ws;
  ws.onopen = () => { ws.send(JSON.stringify({ key: state.key })); subscribe(); setConn(true); };
  ws.onclose = (ev) => {
    setConn(false, ev.reason);
    if (state.ws === ws) setTimeout(connect, 2000);
  };
  ws.onmessage = (ev) => {
    for (const line of ev.data.split("\n")) {
      const m = JSON.parse(line);
      if (!m.subject) continue;
      state.msgs++;
      const d = m.data;
      if (d.type === "trade") {
        state.trades.push(d);
        if (state.trades.length > 4 * TAPE) state.trades.splice(0, state.trades.length - TAPE);
        mark("tape");
      } else if (d.type === "depth" || d.type === "bbo") {
        bookDue = true;
      } else if (["order_update", "fill", "position", "parent_update"].includes(d.type)) {
        accountDue = true;
      }
    }
  };
}
let subscribed = [];
function subscribe() {
  const ws = state.ws;
  if (!ws || ws.readyState !== 1) return;
  const { venue, symbol } = market();
  const want = [];
  if (symbol) want.push(`market.trade.${venue}.${symbol}`, `market.depth.${venue}.${symbol}`);
  if (state.me && state.me.scopes.includes("account") && state.me.account) {
    want.push(`exec.evt.${state.me.account}.>`, `exec.pos.${state.me.account}`);
  }
  const drop = subscribed.filter((s) => !want.includes(s));
  ws.send(JSON.stringify({ subscribe: want.filter((s) => !subscribed.includes(s)), unsubscribe: drop }));
  subscribed = want;
}
function setConn(on, why) {
  const el = $("conn");
  el.textContent = on ? "live" : ("offline" + (why ? `: ${why}` : ""));
  el.className = "pill " + (on ? "on" : "off");
}

// the book ladder follows book.get, refreshed when a depth/BBO message says it moved
let bookDue = false, accountDue = false;
setInterval(() => { if (bookDue) { bookDue = false; pollBook(); } }, 300);
setInterval(() => { if (accountDue) { accountDue = false; pollAccount(); } }, 300);

// -- actions ---------------------------------------------------------------------------
async function place(ev) {
  ev.preventDefault();
  const { venue, symbol } = market();
  const body = { venue, symbol, side: $("o-side").value, quantity: $("o-qty").value.trim(),
                 order_type: "limit", price: $("o-price").value.trim() || null };
  try {
    const r = await fetch("/v1/orders", { method: "POST", body: JSON.stringify(body),
      headers: { "Authorization": "Bearer " + state.key, "Content-Type": "application/json" } });
    const out = await r.json();
    $("order-status").textContent = r.ok ? `placed ${out.client_order_id}: ${out.state}`
      : `refused: ${out.detail || out.reason}`;
  } catch (e) { $("order-status").textContent = String(e); }
  pollAccount();
}

async function cancel(o) {
  try {
    await api(`/v1/orders/${encodeURIComponent(o.client_order_id)}?venue=${o.venue}&symbol=${o.symbol}`, { method: "DELETE" });
  } catch (e) { $("order-status").textContent = String(e); }
  pollAccount();
}

async function runSql() {
  $("sql-status").textContent = "running...";
  try {
    const t0 = performance.now();
    const r = await json("/v1/sql", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sql: $("sql").value, format: "json", max_rows: 1000 }) });
    const thead = $("sql-result").tHead, tbody = $("sql-result").tBodies[0];
    const htr = document.createElement("tr");
    for (const c of r.columns) { const th = document.createElement("th"); th.textContent = c; htr.appendChild(th); }
    thead.replaceChildren(htr);
    fill(tbody, r.rows, (tr, row) => { for (const c of r.columns) cell(tr, row[c] === null ? "NULL" : String(row[c])); });
    $("sql-status").textContent = `${r.rows.length} rows${r.truncated ? " (truncated)" : ""} in ${Math.round(performance.now() - t0)} ms`;
  } catch (e) { $("sql-status").textContent = e.message; }
}

async function exportSql(format) {
  try {
    const r = await api("/v1/sql", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sql: $("sql").value, format, max_rows: 100000 }) });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = `jetmarket.${format === "arrow" ? "arrows" : format}`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
  } catch (e) { $("sql-status").textContent = e.message; }
}

// -- start -----------------------------------------------------------------------------
async function start() {
  // a key in the fragment (#key=...) is taken once and removed: fragments never reach a server
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("key")) { state.key = frag.get("key"); localStorage.setItem("jm_key", state.key); history.replaceState(null, "", location.pathname); }
  $("key").value = state.key;
  if (!state.key) { setConn(false, "enter an API key (jetmarket api keys add)"); return; }
  try { state.me = await json("/v1/me"); }
  catch (e) { setConn(false, e.message); return; }
  $("account").textContent = state.me.account ? `account ${state.me.account}` : "(no account scope)";
  connect();
  loadMarkets();
  pollFeeds(); pollGaps(); pollAccount();
  setInterval(pollFeeds, 2000);
  setInterval(pollGaps, 5000);
  setInterval(pollCandles, 10000);
  setInterval(pollAccount, 3000);
  setInterval(pollBook, 2000);  // also when no depth message says so
}

$("save-key").onclick = () => { localStorage.setItem("jm_key", $("key").value.trim()); location.reload(); };
$("market").onchange = (ev) => {
  state.market = ev.target.value; localStorage.setItem("jm_market", state.market);
  state.trades = []; state.book = null; mark("tape", "book"); subscribe(); pollBook(); pollCandles();
};
$("order-form").onsubmit = place;
$("sql-run").onclick = runSql;
for (const b of document.querySelectorAll("button.export")) b.onclick = () => exportSql(b.dataset.format);
requestAnimationFrame(frame);
start();
