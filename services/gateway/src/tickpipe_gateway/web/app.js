// The tickpipe page: a watchlist of live quotes and a live 1-minute candlestick chart of the selected one.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const auth = token ? { Authorization: `Bearer ${token}` } : {};
const rows = new Map(); // instrument id -> {tr, cells, last}
let selected = null;
let series = null;
let lastCandle = null;

async function api(path) {
  const response = await fetch(path, { headers: auth });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

const fmt = (v, digits = 2) => (v === null || v === undefined ? "-" : Number(v).toLocaleString("en-IN", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function upsertRow(q) {
  let row = rows.get(q.instrument_id);
  if (!row) {
    const tr = document.createElement("tr");
    tr.dataset.instrument = q.instrument_id;
    tr.innerHTML = "<td></td><td></td><td></td><td></td><td></td><td></td>";
    tr.addEventListener("click", () => select(q.instrument_id, q.symbol));
    document.querySelector("#quotes tbody").appendChild(tr);
    row = { tr, cells: tr.querySelectorAll("td"), last: null };
    rows.set(q.instrument_id, row);
  }
  const [symbol, ltp, chg, bid, ask, volume] = row.cells;
  symbol.textContent = q.symbol ?? q.instrument_id;
  if (row.last !== null && q.ltp !== row.last) {
    ltp.className = "";
    void ltp.offsetWidth; // restart the flash
    ltp.className = q.ltp > row.last ? "up" : "down";
  }
  row.last = q.ltp;
  ltp.textContent = fmt(q.ltp);
  chg.textContent = fmt(q.change_pct);
  bid.textContent = fmt(q.bid);
  ask.textContent = fmt(q.ask);
  volume.textContent = fmt(q.volume, 0);
}

const toChart = (c) => ({ time: Math.floor(Date.parse(c.time) / 1000), open: c.open, high: c.high, low: c.low, close: c.close });

function showLast(candle) {
  lastCandle = candle;
  const el = document.getElementById("chart");
  el.dataset.lastTime = candle ? candle.time : "";
  el.dataset.lastClose = candle ? candle.close : "";
}

async function select(id, symbol) {
  selected = id;
  for (const [rid, row] of rows) row.tr.classList.toggle("selected", rid === id);
  document.getElementById("chart-title").textContent = `${symbol} 1m`;
  const data = await api(`/v1/candles?instrument=${id}&interval=1m`);
  const candles = data.candles.map(toChart);
  series.setData(candles);
  showLast(candles.length ? candles[candles.length - 1] : null);
}

function onTick(t) {
  upsertRow({ ...t });
  if (t.instrument_id !== selected || !series) return;
  const minute = Math.floor(Date.parse(t.time) / 60000) * 60;
  let c = lastCandle;
  if (!c || minute > c.time) c = { time: minute, open: t.ltp, high: t.ltp, low: t.ltp, close: t.ltp };
  else if (minute === c.time) c = { ...c, high: Math.max(c.high, t.ltp), low: Math.min(c.low, t.ltp), close: t.ltp };
  else return; // a late tick for an older candle: the next reload shows it
  series.update(c);
  showLast(c);
}

function connect(ids) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream${token ? `?token=${encodeURIComponent(token)}` : ""}`);
  let since = null;
  ws.onopen = () => ws.send(JSON.stringify(since ? { subscribe: ids, since } : { subscribe: ids }));
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    for (const t of m.type === "ticks" ? m.ticks : m.type === "tick" ? [m] : []) { since = t.time; onTick(t); }
  };
  ws.onclose = () => setTimeout(() => connect(ids), 1000);
}

async function health() {
  const el = document.getElementById("health");
  try {
    const [h, lag] = await Promise.all([api("/v1/health"), api("/v1/lag")]);
    el.textContent = `${h.status} · ${h.stream.clients} clients · ${h.stream.ticks_in} ticks in · lag ${lag.lag_seconds === null ? "-" : lag.lag_seconds.toFixed(1) + " s"}`;
    el.className = `health ${h.status === "ok" ? "ok" : "bad"}`;
  } catch (e) {
    el.textContent = String(e);
    el.className = "health bad";
  }
}

async function main() {
  const chart = LightweightCharts.createChart(document.getElementById("chart"), {
    autoSize: true,
    layout: { background: { color: "#0f1115" }, textColor: "#d7dae0" },
    grid: { vertLines: { color: "#1c2030" }, horzLines: { color: "#1c2030" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  series = chart.addSeries(LightweightCharts.CandlestickSeries, { upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a", wickDownColor: "#ef5350", borderVisible: false });
  const { quotes } = await api("/v1/quotes");
  quotes.forEach(upsertRow);
  if (quotes.length) await select(quotes[0].instrument_id, quotes[0].symbol);
  connect(quotes.map((q) => q.instrument_id));
  health();
  setInterval(health, 5000);
}

main().catch((e) => { document.getElementById("health").textContent = String(e); });
