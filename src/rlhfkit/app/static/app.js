// rlhfkit annotation pages. Model output is untrusted: it is only ever put into
// the page with textContent (never parsed as HTML), so HTML or script in a generation
// shows as text. The Content-Security-Policy allows no other script than this file.
"use strict";

const HEADERS = { "Content-Type": "application/json", "X-Requested-With": "rlhfkit" };

async function api(method, path, body) {
  const options = { method, headers: HEADERS, credentials: "same-origin" };
  if (body !== undefined) options.body = JSON.stringify(body);
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401 && document.body.dataset.page !== "login") {
    window.location.assign("/");
    throw new Error("signed out");
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`;
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return { status: response.status, data };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function byId(id) { return document.getElementById(id); }

function setStatus(text, isError) {
  const status = byId("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function percent(x) { return x === null || x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`; }
function number(x) { return x === null || x === undefined ? "n/a" : x.toFixed(3); }

async function logout() {
  try { await api("DELETE", "/api/session"); } finally { window.location.assign("/"); }
}

// -- sign in --------------------------------------------------------------------------

function loginPage() {
  byId("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = byId("token").value.trim();
    byId("error").textContent = "";
    try {
      const { data } = await api("POST", "/api/session", { token });
      window.location.assign(data.role === "admin" ? "/admin" : "/annotate");
    } catch (error) {
      byId("error").textContent = error.status === 401 ? "That token is not valid." : error.message;
    }
  });
}

// -- annotate -------------------------------------------------------------------------

const KINDS = ["comparison", "rating", "label", "ranking", "language", "correction"];
// The run's instructions, rating scale and label choices come from GET /api/settings (the run's config, which the
// loop wrote to the store); the page has no defaults of its own for them.
const state = {
  queue: [], current: null, busy: false, loading: false, timer: null, scale: [1, 7], choices: [], ranking: [],
  prefetched: new Set(),
};

function letter(i) { return String.fromCharCode(65 + i); }

function renderText(container, value) {
  if (typeof value === "string") {
    container.appendChild(el("pre", "text", value));
    return;
  }
  for (const message of value || []) {
    const turn = el("div", "turn");
    turn.appendChild(el("span", "role", `${message.role}: `));
    turn.appendChild(el("pre", "text", message.content));
    container.appendChild(turn);
  }
}

function plainText(value) {
  if (typeof value === "string") return value;
  return (value || []).map((m) => `${m.role}: ${m.content}`).join("\n");
}

function samePrompt(items) {
  return items.every((item) => JSON.stringify(item.prompt) === JSON.stringify(items[0].prompt));
}

function showItems(items) {
  const shared = byId("shared-prompt");
  shared.replaceChildren();
  const textual = items.every((item) => item.domain === "text");
  const oneprompt = textual && samePrompt(items);
  shared.hidden = !oneprompt;
  if (oneprompt) {
    shared.appendChild(el("strong", null, "Prompt"));
    renderText(shared, items[0].prompt);
  }
  const pair = byId("pair");
  pair.replaceChildren();
  const videos = [];
  const sides = [];
  items.forEach((item, i) => {
    const side = letter(i).toLowerCase();
    const article = el("article", "side");
    article.id = `side-${side}`;
    article.appendChild(el("h2", null, items.length > 1 ? letter(i) : "The generation"));
    const content = el("div", "content");
    content.id = `content-${side}`;
    if (item.domain === "text") {
      if (!oneprompt) {
        content.appendChild(el("strong", null, "Prompt"));
        renderText(content, item.prompt);
        content.appendChild(el("strong", null, "Completion"));
      }
      const completion = el("div", "completion");
      completion.id = `completion-${side}`;
      renderText(completion, item.completion);
      content.appendChild(completion);
    } else {
      const video = document.createElement("video");
      video.muted = true;
      video.playsInline = true;
      video.preload = "auto";
      video.id = `video-${side}`;
      video.src = item.video;
      content.appendChild(video);
      content.appendChild(el("p", "meta", `${item.steps} steps`));
      videos.push(video);
      sides.push(article);
    }
    article.appendChild(content);
    pair.appendChild(article);
  });
  byId("media-controls").hidden = videos.length === 0;
  state.replay = null;
  waitForMedia(videos, sides);
  if (videos.length) syncVideos(videos);
}

// The answers stay locked until every clip of the query can play through: a
// person must not judge a black box. A clip that fails to load unlocks them with
// a note (they may answer "can't compare" or reload).
function waitForMedia(videos, sides) {
  const wait = {};  // events of an earlier query's clips must not unlock this one
  state.mediaWait = wait;
  state.loading = videos.length > 0;
  byId("media-wait").hidden = !state.loading;
  let ready = 0;
  const unlock = () => {
    if (state.mediaWait !== wait || !state.loading) return;
    state.loading = false;
    byId("media-wait").hidden = true;
    setBusy(state.busy);
  };
  videos.forEach((video, i) => {
    sides[i].classList.add("loading");
    video.addEventListener("canplaythrough", () => {
      sides[i].classList.remove("loading");
      ready += 1;
      if (ready === videos.length) unlock();
    }, { once: true });
    video.addEventListener("error", () => {
      if (state.mediaWait !== wait) return;
      sides[i].classList.remove("loading");
      setStatus(`Clip ${letter(i)} could not be loaded: answer "can't compare", or reload the page.`, true);
      unlock();
    }, { once: true });
  });
}

// Fetch the clips of the next queued query now, so the server renders them (if it
// has not already) and the browser holds them before the person gets there.
function prefetchNext() {
  const upcoming = state.queue[0];
  if (!upcoming) return;
  for (const item of upcoming.items) {
    if (item.domain !== "control" || !item.video || state.prefetched.has(item.video)) continue;
    state.prefetched.add(item.video);
    fetch(item.video, { credentials: "same-origin" }).catch(() => state.prefetched.delete(item.video));
  }
}

function showForm(query) {
  for (const kind of KINDS) byId(`form-${kind}`).hidden = kind !== query.kind;
  const correctable = query.kind !== "correction" || query.items[0].domain === "text";
  byId("unsupported").hidden = correctable && KINDS.includes(query.kind);
  if (query.kind === "correction" && !correctable) byId("form-correction").hidden = true;
  if (query.kind === "comparison") {
    byId("confidence").value = "50";
    updateConfidence();
  } else if (query.kind === "rating") {
    const [low, high] = state.scale;
    byId("rating-range").textContent = `(${low} = worst, ${high} = best)`;
    const buttons = [];
    for (let v = Math.ceil(low); v <= Math.floor(high); v += 1) {
      const b = el("button", null, String(v));
      b.type = "button";
      b.dataset.value = String(v);
      b.addEventListener("click", () => sendBody({ kind: "rating", value: v }));
      buttons.push(b);
    }
    byId("rating-buttons").replaceChildren(...buttons);
  } else if (query.kind === "label") {
    const buttons = state.choices.concat(["none of these"]).map((choice, i) => {
      const key = i < state.choices.length ? String(i + 1) : "0";
      const b = el("button", null, `${choice} `);
      b.type = "button";
      b.dataset.label = choice;
      b.appendChild(el("kbd", null, key));
      b.addEventListener("click", () => sendBody({ kind: "label", label: choice }));
      return b;
    });
    byId("label-buttons").replaceChildren(...buttons);
  } else if (query.kind === "ranking") {
    state.ranking = query.items.map((item) => item.generation_id);
    drawRanking(query);
  } else if (query.kind === "language") {
    byId("utterance").value = "";
  } else if (query.kind === "correction" && correctable) {
    byId("corrected").value = plainText(query.items[0].completion);  // a form value: never parsed as HTML
  }
}

function drawRanking(query) {
  const names = new Map(query.items.map((item, i) => [item.generation_id, i]));
  const rows = state.ranking.map((gid, position) => {
    const i = names.get(gid);
    const item = query.items[i];
    const li = el("li");
    li.dataset.generationId = gid;
    const summary = item.domain === "text" ? plainText(item.completion).slice(0, 80) : `${item.steps} steps`;
    li.appendChild(el("strong", null, `${letter(i)} `));
    li.appendChild(el("span", null, summary));
    const up = el("button", null, "↑");
    up.type = "button";
    up.disabled = position === 0;
    up.addEventListener("click", () => { moveRank(position, -1); drawRanking(query); });
    const down = el("button", null, "↓");
    down.type = "button";
    down.disabled = position === state.ranking.length - 1;
    down.addEventListener("click", () => { moveRank(position, 1); drawRanking(query); });
    li.append(up, down);
    return li;
  });
  byId("ranking-list").replaceChildren(...rows);
}

function moveRank(position, step) {
  const other = position + step;
  if (other < 0 || other >= state.ranking.length) return;
  [state.ranking[position], state.ranking[other]] = [state.ranking[other], state.ranking[position]];
}

function showQuery(query) {
  state.current = query;
  byId("empty").hidden = true;
  byId("query").hidden = false;
  document.body.dataset.queryId = query.id;
  document.body.dataset.kind = query.kind;
  byId("query-id").textContent = query.id;
  byId("query-round").textContent = String(query.round);
  setStatus("");  // a message about the previous query must not sit under this one
  showItems(query.items);
  showForm(query);
  setBusy(false);
  prefetchNext();
}

// Play the videos in sync: all start together once all can play, the others
// follow the first one's clock, and all restart together when all have ended.
function syncVideos(videos) {
  let ready = 0;
  const start = () => {
    for (const v of videos) { v.pause(); v.currentTime = 0; }
    Promise.all(videos.map((v) => v.play().catch(() => undefined))).then(() => undefined);
  };
  for (const v of videos) {
    v.addEventListener("canplaythrough", () => { ready += 1; if (ready === videos.length) start(); }, { once: true });
    v.addEventListener("ended", () => { if (videos.every((w) => w.ended)) setTimeout(start, 400); });
  }
  const [lead, ...followers] = videos;
  lead.addEventListener("timeupdate", () => {
    for (const follow of followers) {
      if (!follow.ended && Math.abs(follow.currentTime - lead.currentTime) > 0.05) follow.currentTime = lead.currentTime;
    }
  });
  byId("replay").onclick = start;
  state.replay = start;
}

function setBusy(busy) {
  state.busy = busy;
  const locked = busy || state.loading;
  for (const button of document.querySelectorAll(".form button")) button.disabled = locked;
  if (!locked && state.current && state.current.kind === "ranking") drawRanking(state.current);
}

function updateConfidence() {
  byId("confidence-value").textContent = `${byId("confidence").value}%`;
}

async function refreshQueue() {
  const { data } = await api("GET", "/api/queue?limit=10");
  byId("progress").textContent = `${data.answered} answered · ${data.pending} to go`;
  byId("paused").hidden = !data.paused;
  const answeredHere = new Set(state.done || []);
  state.queue = data.queries.filter((q) => !answeredHere.has(q.id));
  return data;
}

async function next() {
  clearTimeout(state.timer);
  if (!state.queue.length) {
    try { await refreshQueue(); } catch (error) { setStatus(error.message, true); }
  }
  const query = state.queue.shift();
  if (!query) {
    state.current = null;
    delete document.body.dataset.queryId;
    byId("query").hidden = true;
    byId("empty").hidden = false;
    state.timer = setTimeout(next, 5000);
    return;
  }
  showQuery(query);
}

function describe(body) {
  if (body.kind === "comparison") return body.answer === "graded" ? `P(A better) = ${body.mu_a}` : body.answer;
  if (body.kind === "rating") return `rating ${body.value}`;
  if (body.kind === "label") return `label "${body.label}"`;
  return body.kind;
}

async function sendBody(fields) {
  const query = state.current;
  if (!query || state.busy || state.loading) return;
  setBusy(true);
  const body = Object.assign({ query_id: query.id }, fields);
  try {
    const { data } = await api("POST", "/api/answers", body);
    state.done = (state.done || []).concat([query.id]).slice(-200);
    // said in the header, about that query: the status line under the next query starts empty
    byId("saved").textContent = data.duplicate ? `Query ${query.id} was already saved.` : `Saved ${query.id}: ${describe(body)}.`;
    state.queue = state.queue.filter((q) => q.id !== query.id);
    await refreshQueue().catch(() => undefined);
    state.queue = state.queue.filter((q) => q.id !== query.id);
    await next();
  } catch (error) {
    setStatus(`Not saved: ${error.message}`, true);
    setBusy(false);
  }
}

function send(answer, muA) {
  const body = { kind: "comparison", answer };
  if (answer === "graded") body.mu_a = muA;
  return sendBody(body);
}

function sendGraded() {
  send("graded", Number(byId("confidence").value) / 100);
}

function sendText(kind) {
  const field = kind === "language" ? "utterance" : "corrected";
  const text = byId(field).value;
  if (!text.trim()) { setStatus("Write something first.", true); return; }
  sendBody(kind === "language" ? { kind, utterance: text } : { kind, completion: text });
}

const KEYS = { "1": "A", a: "A", "2": "B", b: "B", "3": "equal", e: "equal", "4": "incomparable", x: "incomparable" };

function onKey(event) {
  const query = state.current;
  if (!query) return;
  const target = event.target;
  const typing = target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type !== "range"));
  if (typing) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.tagName === "TEXTAREA") {
      event.preventDefault();
      sendText(query.kind);
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (key === "r" && state.replay) { event.preventDefault(); state.replay(); return; }
  if (query.kind === "comparison") {
    if (KEYS[key]) { event.preventDefault(); send(KEYS[key]); return; }
    if (key === "g" || (key === "Enter" && target && target.id === "confidence")) { event.preventDefault(); sendGraded(); return; }
    if ((key === "ArrowLeft" || key === "ArrowRight") && !(target && target.id === "confidence")) {
      event.preventDefault();
      const slider = byId("confidence");
      slider.value = String(Number(slider.value) + (key === "ArrowRight" ? 5 : -5));
      updateConfidence();
    }
  } else if (query.kind === "rating" && /^[0-9]$/.test(key)) {
    const value = Number(key);
    if (value >= state.scale[0] && value <= state.scale[1]) { event.preventDefault(); sendBody({ kind: "rating", value }); }
  } else if (query.kind === "label" && /^[0-9]$/.test(key)) {
    const i = Number(key);
    const label = i === 0 ? "none of these" : state.choices[i - 1];
    if (label !== undefined) { event.preventDefault(); sendBody({ kind: "label", label }); }
  } else if (query.kind === "ranking" && key === "Enter") {
    event.preventDefault();
    sendBody({ kind: "ranking", ranked: state.ranking.slice() });
  }
}

function showSettings(settings) {
  byId("instructions").textContent = settings.instructions;  // plain text from the run's config, never parsed
  state.scale = settings.rating_scale;
  state.choices = settings.label_choices;
  document.body.dataset.labels = settings.label_choices.join("|");
}

async function annotatePage() {
  try {
    const [me, settings] = await Promise.all([api("GET", "/api/me"), api("GET", "/api/settings")]);
    byId("who").textContent = me.data.annotator_id;
    showSettings(settings.data);
  } catch (error) { return; }
  byId("logout").addEventListener("click", logout);
  for (const button of document.querySelectorAll("#answer-buttons button")) {
    button.addEventListener("click", () => send(button.dataset.answer));
  }
  byId("answer-graded").addEventListener("click", sendGraded);
  byId("confidence").addEventListener("input", updateConfidence);
  byId("send-ranking").addEventListener("click", () => sendBody({ kind: "ranking", ranked: state.ranking.slice() }));
  byId("send-language").addEventListener("click", () => sendText("language"));
  byId("send-correction").addEventListener("click", () => sendText("correction"));
  document.addEventListener("keydown", onKey);
  await next();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "login") loginPage();
  else if (page === "annotate") annotatePage();
  else if (page === "admin") adminPage();
});
