// rlhfkit admin page: the loop's state and pause, progress per annotator and per round
// (charts drawn as SVG elements from numbers, no library), agreement. Loaded after
// app.js, whose helpers (api, el, byId, setStatus, percent, number, logout) it uses;
// app.js starts adminPage() on the admin page.
"use strict";

// -- admin ----------------------------------------------------------------------------

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const cell of cells) tr.appendChild(el("td", null, cell));
    return tr;
  }));
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// A small chart of one value per round: bars (answers) or a line (returns). Drawn as
// SVG elements from numbers only; no library, no inline script or style.
function chart(title, rounds, values, kind, cls) {
  const W = 300, H = 150, left = 46, right = 10, top = 20, bottom = 24;
  const root = svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  root.dataset.title = title;
  root.appendChild(svg("title", {}, title));
  root.appendChild(svg("text", { x: left, y: 13 }, title));
  const known = values.filter((v) => v !== null && v !== undefined);
  if (!rounds.length || !known.length) {
    root.appendChild(svg("text", { x: left, y: H / 2 }, "nothing yet"));
    return root;
  }
  let lo = Math.min(...known), hi = Math.max(...known);
  if (kind === "bar") lo = Math.min(0, lo);
  if (hi === lo) { hi += 1; lo -= kind === "bar" ? 0 : 1; }
  const x0 = Math.min(...rounds), x1 = Math.max(...rounds);
  const step = (W - left - right) / Math.max(1, x1 - x0 + 1);
  const x = (r) => left + (r - x0 + 0.5) * step;
  const y = (v) => top + (H - top - bottom) * (1 - (v - lo) / (hi - lo));
  root.appendChild(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom }));
  root.appendChild(svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W - right, y2: H - bottom }));
  root.appendChild(svg("text", { x: 2, y: top + 4 }, Number(hi.toPrecision(3))));
  root.appendChild(svg("text", { x: 2, y: H - bottom }, Number(lo.toPrecision(3))));
  const labelEvery = Math.ceil(rounds.length / 10);
  rounds.forEach((r, i) => {
    if (i % labelEvery === 0) root.appendChild(svg("text", { x: x(r) - 3, y: H - 8 }, r));
  });
  if (kind === "bar") {
    rounds.forEach((r, i) => {
      const v = values[i] || 0;
      const h = y(lo) - y(v);
      root.appendChild(svg("rect", { class: "bar", x: x(r) - step * 0.35, y: y(v), width: step * 0.7, height: Math.max(h, 0) }));
    });
  } else {
    const points = rounds.map((r, i) => [r, values[i]]).filter(([, v]) => v !== null && v !== undefined);
    root.appendChild(svg("polyline", { class: cls, points: points.map(([r, v]) => `${x(r)},${y(v)}`).join(" ") }));
    for (const [r, v] of points) root.appendChild(svg("circle", { class: cls, cx: x(r), cy: y(v), r: 3 }));
  }
  return root;
}

function showRounds(data) {
  const rounds = data.rounds.map((r) => r.round);
  const charts = [chart("Answers per round", rounds, data.rounds.map((r) => r.answers), "bar", "answers")];
  if (data.metrics) {
    charts.push(chart("True return", rounds, data.rounds.map((r) => r.true_return), "line", "true"));
    charts.push(chart("Learned return", rounds, data.rounds.map((r) => r.learned_return), "line", "learned"));
  }
  byId("charts").replaceChildren(...charts);
  byId("no-metrics").hidden = data.metrics;
  fillTable("rounds-table", data.rounds.map((r) => [
    String(r.round), String(r.queries), String(r.answers), number(r.true_return), number(r.learned_return),
  ]));
  const link = byId("report-link");
  link.hidden = !data.report;
  if (data.report) link.href = data.report;
}

async function refreshAdmin() {
  const [progress, agreement, loop, rounds] = await Promise.all([
    api("GET", "/api/admin/progress"), api("GET", "/api/admin/agreement"), api("GET", "/api/admin/loop"),
    api("GET", "/api/admin/rounds"),
  ]);
  const p = progress.data;
  byId("n-queries").textContent = String(p.queries);
  byId("n-answers").textContent = String(p.answers);
  fillTable("progress-table", p.annotators.map((a) => [
    a.role === "admin" ? `${a.annotator_id} (admin)` : a.annotator_id, a.kind, String(a.answered),
  ]));
  showRounds(rounds.data);
  const g = agreement.data;
  byId("n-units").textContent = String(g.n_units);
  byId("n-pairs").textContent = String(g.n_pairs);
  byId("pairwise").textContent = percent(g.pairwise);
  byId("alpha-nominal").textContent = number(g.alpha_nominal);
  byId("alpha-interval").textContent = number(g.alpha_interval);
  fillTable("pairs-table", g.by_pair.map((r) => [r.annotators.join(" · "), String(r.agree), String(r.pairs)]));
  showLoop(loop.data);
}

function showLoop(loop) {
  byId("loop-state").textContent = loop.paused ? "paused" : "running";
  const status = loop.status || {};
  const parts = [];
  if (status.round !== undefined) parts.push(`round ${status.round}`);
  if (status.phase) parts.push(String(status.phase));
  byId("loop-status").textContent = parts.length ? `(${parts.join(", ")})` : "";
  const toggle = byId("pause-toggle");
  toggle.textContent = loop.paused ? "Resume the loop" : "Pause the loop";
  toggle.dataset.paused = loop.paused ? "1" : "0";
}

async function adminPage() {
  try {
    const { data } = await api("GET", "/api/me");
    byId("who").textContent = data.annotator_id;
  } catch (error) { return; }
  byId("logout").addEventListener("click", logout);
  byId("pause-toggle").addEventListener("click", async () => {
    const paused = byId("pause-toggle").dataset.paused !== "1";
    try {
      const { data } = await api("POST", "/api/admin/loop", { paused });
      showLoop(data);
    } catch (error) { setStatus(error.message, true); }
  });
  const tick = async () => {
    try { await refreshAdmin(); setStatus(""); } catch (error) { setStatus(error.message, true); }
  };
  await tick();
  setInterval(tick, 5000);
  document.body.dataset.ready = "1";
}
