// Face labeller page: one decision per key press, saved on the server before the next image shows.
"use strict";

// key -> [gender, quality]; gender 1 woman / 0 man, quality 1 good / 0 bad, null = unsure
const LABEL_KEYS = {
  "1": [1, 1], " ": [1, 1], "2": [0, 1], "3": [1, 0], "4": [0, 0],
  "5": [1, null], "6": [0, null], "7": [null, 1], "8": [null, 0], "s": [null, null], "u": [null, null],
};
const RATE_WINDOW_MS = 10 * 60 * 1000;

const S = {
  main: [], review: [], reviewInfo: {}, labels: {}, total: 0, decided: 0,
  list: "main", idx: { main: 0, review: 0 }, grid: false, sel: new Set(), anchor: null,
  times: [], cells: null, gridList: null,
};
let queue = Promise.resolve();
const $ = (id) => document.getElementById(id);

function current() { return S.list === "main" ? S.main : S.review; }
function imageUrl(name) { return "/images/" + encodeURIComponent(name); }

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) { // the browser's "Failed to fetch": no answer at all
    throw new Error("the labeller server is not answering (stopped, or the SSH tunnel closed?): "
      + "start 02_label_images.py again, then reload this page");
  }
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || String(response.status));
  return data;
}

function status(text, isError) {
  $("status").textContent = text || "";
  $("status").classList.toggle("error", Boolean(isError));
}

const VALUE_WORDS = { gender: { 1: "woman", 0: "man" }, quality: { 1: "good", 0: "bad" } };
function valueWord(task, value) { return (VALUE_WORDS[task] || {})[value] ?? String(value); }

function labelText(label) {
  if (!label) return "";
  const g = label.gender === 1 ? "woman" : label.gender === 0 ? "man" : "gender ?";
  const q = label.quality === 1 ? "good" : label.quality === 0 ? "bad" : "quality ?";
  return label.gender === null && label.quality === null ? "unsure" : g + " · " + q;
}

function setBadge(el, label) {
  el.textContent = labelText(label);
  el.className = "badge " + (!label ? "" : label.gender === 1 ? "w" : label.gender === 0 ? "m" : "q")
    + (label && label.quality === 0 ? " bad" : "");
}

function applyResult(result) {
  Object.assign(S.labels, result.labels || {});
  if (typeof result.decided === "number") S.decided = result.decided;
  if (S.cells) for (const name of Object.keys(result.labels || {})) updateCell(name);
}

function renderHeader() {
  const list = current();
  const pct = S.total ? (100 * S.decided / S.total).toFixed(1) : "0";
  $("progress").textContent = `${S.decided} / ${S.total} labelled (${pct}%)`;
  const now = Date.now();
  S.times = S.times.filter((t) => now - t < RATE_WINDOW_MS);
  const n = S.times.length;
  const minutes = n >= 2 ? (S.times[n - 1] - S.times[0]) / 60000 : 0;
  $("rate").textContent = minutes > 0 ? `${((n - 1) / minutes).toFixed(1)} labels/min` : "– labels/min";
  const idx = S.idx[S.list];
  $("position").textContent = idx < list.length ? `#${idx + 1} of ${list.length}` : `end of ${list.length}`;
  $("mode").textContent = (S.list === "main" ? "labelling" : "review") + (S.grid ? " · grid" : "");
}

function renderSingle() {
  const list = current();
  const idx = S.idx[S.list];
  const name = list[idx];
  document.body.dataset.img = name || "";
  // At the end of the list, "all done" only when every image of it has a decision (skipped ones count).
  const open = name === undefined ? list.filter((n) => !S.labels[n]).length : 0;
  $("done").hidden = name !== undefined || open > 0;
  $("open").hidden = name !== undefined || open === 0;
  $("open-count").textContent = open === 1 ? "1 image is" : `${open} images are`;
  $("face").hidden = name === undefined;
  $("name").textContent = name || "";
  setBadge($("current"), name ? S.labels[name] : null);
  const info = name && S.reviewInfo[name];
  $("model").textContent = info
    ? "model: " + info.tasks.map((t) => `${t.task} ${t.score.toFixed(2)} (label was ${valueWord(t.task, t.label)})`).join(", ")
    : "";
  if (name) {
    if ($("status").textContent.startsWith("cannot display")) status("");
    $("face").src = imageUrl(name);
    for (let k = 1; k <= 3; k++) if (list[idx + k]) new Image().src = imageUrl(list[idx + k]);
  }
}

function render() {
  renderHeader();
  $("single").hidden = S.grid;
  $("grid").hidden = !S.grid;
  $("gridhint").hidden = !S.grid;
  if (S.grid) renderGrid(); else renderSingle();
}

// ---- grid -----------------------------------------------------------------------------------
function buildGrid() {
  const grid = $("grid");
  grid.textContent = "";
  S.cells = new Map();
  S.gridList = S.list;
  current().forEach((name, i) => {
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.dataset.img = name;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = imageUrl(name);
    img.alt = name;
    const badge = document.createElement("span");
    cell.append(img, badge);
    const info = S.reviewInfo[name];
    if (S.list === "review" && info) {
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = info.tasks.map((t) => `${t.task[0]} ${t.score.toFixed(2)}`).join(" ");
      cell.append(score);
    }
    cell.addEventListener("click", (ev) => { queue = queue.then(() => clickCell(i, ev.shiftKey)); });
    cell.addEventListener("dblclick", () => { S.idx[S.list] = i; S.grid = false; render(); });
    grid.append(cell);
    S.cells.set(name, cell);
    updateCell(name);
  });
}

function updateCell(name) {
  const cell = S.cells && S.cells.get(name);
  if (!cell) return;
  const label = S.labels[name];
  setBadge(cell.querySelector("span"), label);
  cell.classList.toggle("undecided", !label);
  cell.classList.toggle("selected", S.sel.has(name));
}

function renderGrid() {
  if (!S.cells || S.gridList !== S.list) buildGrid();
  const list = current();
  const cursor = Math.min(S.idx[S.list], list.length - 1);
  for (const [name, cell] of S.cells) {
    cell.classList.toggle("selected", S.sel.has(name));
    cell.classList.remove("cursor");
  }
  const cell = S.cells.get(list[cursor]);
  if (cell) { cell.classList.add("cursor"); cell.scrollIntoView({ block: "nearest" }); }
}

function gridColumns() {
  return getComputedStyle($("grid")).gridTemplateColumns.split(" ").length || 1;
}

function clickCell(i, shift) {
  const list = current();
  if (shift && S.anchor !== null) {
    const [a, b] = [Math.min(S.anchor, i), Math.max(S.anchor, i)];
    for (let k = a; k <= b; k++) S.sel.add(list[k]);
  } else {
    const name = list[i];
    if (S.sel.has(name)) S.sel.delete(name); else S.sel.add(name);
    S.anchor = i;
  }
  S.idx[S.list] = i;
  render();
}

// ---- actions --------------------------------------------------------------------------------
async function decide(gender, quality) {
  const list = current();
  if (S.grid) {
    const cursor = list[Math.min(S.idx[S.list], list.length - 1)];
    const targets = S.sel.size ? [...S.sel] : (cursor ? [cursor] : []);
    if (!targets.length) return;
    applyResult(await api("/api/label", { items: targets.map((img) => ({ img, gender, quality })) }));
    status(`set ${targets.length} image(s)`);
    S.sel.clear();
    render();
    return;
  }
  const name = list[S.idx[S.list]];
  if (!name) return;
  // The server answers only after the decision is fsynced; only then does the next image show.
  applyResult(await api("/api/label", { img: name, gender, quality }));
  S.times.push(Date.now());
  S.idx[S.list] = Math.min(S.idx[S.list] + 1, list.length);
  status("");
  render();
}

async function clearDecision() {
  const list = current();
  const targets = S.grid && S.sel.size ? [...S.sel] : [list[Math.min(S.idx[S.list], list.length - 1)]];
  if (!targets[0]) return;
  applyResult(await api("/api/label", { items: targets.map((img) => ({ img, clear: true })) }));
  S.sel.clear();
  render();
}

async function undo() {
  const result = await api("/api/undo", {});
  applyResult(result);
  if (!result.images.length) { status("nothing to undo"); render(); return; }
  S.times.pop();
  const list = current();
  const where = list.indexOf(result.images[0]);
  if (where >= 0) S.idx[S.list] = where;
  status(`undone: ${result.images.length > 1 ? result.images.length + " images" : result.images[0]}`);
  render();
}

function move(delta) {
  const list = current();
  const limit = S.grid ? list.length - 1 : list.length;
  S.idx[S.list] = Math.max(0, Math.min(limit, S.idx[S.list] + delta));
  render();
}

function nextUndecided() {
  const list = current();
  const start = S.idx[S.list];
  for (let k = 1; k <= list.length; k++) {
    const i = (start + k) % list.length;
    if (!S.labels[list[i]]) { S.idx[S.list] = i; status(""); render(); return; }
  }
  status("every image of this list has a decision");
}

function setReview(items) {
  S.review = items.map((item) => item.img);
  S.reviewInfo = Object.fromEntries(items.map((item) => [item.img, item]));
}

async function toggleReview() {
  if (S.list === "main") {
    // Built now, so a file step 3 wrote after the labeller started is used.
    const result = await api("/api/review");
    setReview(result.review);
    Object.assign(S.labels, result.labels || {});
    S.idx.review = 0;
    if (S.gridList === "review") S.cells = null;
    if (!S.review.length) {
      status(result.oof_exists
        ? "nothing to review: every hand label agrees with the out-of-fold predictions"
        : `no review list yet: it needs step 3's out-of-fold predictions (${result.oof || "oof_predictions.csv"})`);
      return;
    }
  }
  S.list = S.list === "main" ? "review" : "main";
  S.sel.clear();
  S.anchor = null;
  render();
}

async function handleKey(key, shift) {
  if (key in LABEL_KEYS) return decide(...LABEL_KEYS[key]);
  switch (key) {
    case "Backspace": case "z": return undo();
    case "ArrowRight": return move(1);
    case "ArrowLeft": return move(-1);
    case "ArrowDown": return move(S.grid ? gridColumns() : 1);
    case "ArrowUp": return move(S.grid ? -gridColumns() : -1);
    case "n": return nextUndecided();
    case "x": return clearDecision();
    case "g": S.grid = !S.grid; S.sel.clear(); return render();
    case "r": return toggleReview();
    case "a": if (S.grid) { current().forEach((n) => S.sel.add(n)); render(); } return;
    case "Escape": S.sel.clear(); return render();
    case "Enter": if (S.grid) { S.grid = false; render(); } return;
    default: return undefined;
  }
}

const HANDLED = new Set([...Object.keys(LABEL_KEYS), "Backspace", "z", "ArrowRight", "ArrowLeft", "ArrowDown",
  "ArrowUp", "n", "x", "g", "r", "a", "Escape", "Enter"]);

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || !HANDLED.has(ev.key)) return;
  ev.preventDefault();
  // Keys are queued, so a fast typist never skips or double-labels an image.
  queue = queue.then(() => handleKey(ev.key, ev.shiftKey)).catch((err) => {
    status("NOT SAVED: " + err.message, true);
  }).then(() => { document.body.dataset.pending = "0"; });
  document.body.dataset.pending = "1";
});

async function load() {
  const state = await api("/api/state");
  S.main = state.sequence;
  setReview(state.review);
  S.labels = state.labels;
  S.total = state.total;
  S.decided = state.decided;
  S.idx.main = state.resume === null ? state.sequence.length : state.resume;
  render();
  if (S.review.length) status(`${S.review.length} labels to review (r)`);
  document.body.dataset.ready = "1";
}

$("face").addEventListener("error", () => {
  if ($("face").getAttribute("src")) status("cannot display this image (corrupt file?): press s to mark it unsure");
});
setInterval(renderHeader, 5000);
load().catch((err) => status("cannot load state: " + err.message, true));
