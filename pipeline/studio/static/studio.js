// The studio page: state in the URL, one render in flight, the newest wanted view wins.
//
// Every control change computes the view's query and calls want(). pump() sends it only when no
// render is in flight; while one is, later changes just overwrite `wanted`, so a long drag sends
// at most one request per finished render and the last image painted is the last view wanted.
// While a slider is held the requests carry drag=1 (the server may answer a 64 px preview); the
// exact frame is asked REST_MS after the last input, or at once when the slider is let go.
// Every value the page sends passes the same checks the server makes (check* below); a value the
// URL or a box gives that fails them is corrected at its control, with a message next to it.
"use strict";

const $ = (id) => document.getElementById(id);
const LABELS = { base: "base (unedited)", directions: "latent directions",
                 "directions+refine": "latent directions, refined", sefa: "SeFa directions",
                 finetuned: "fine-tuned" };
const SHORT = { base: "base", directions: "directions", "directions+refine": "refined", sefa: "SeFa",
                finetuned: "fine-tuned" };
const NAMES = { eyes: "eyes", hair_color: "hair colour", hair_length: "hair length", mouth: "mouth",
                face_pose: "pose" };
const ENDS = { eyes: ["closed", "wide open"], hair_color: ["dark", "light"], hair_length: ["short", "long"],
               mouth: ["closed", "open"], face_pose: ["turned left", "turned right"] };
const TILE_PX = { 1: 256, 2: 192 };   // display size of a face by strip length (larger strips: 128)
const REST_MS = 250;                  // the exact frame follows the last slider input after this (<= 300 ms)
const RETRY_MS = 1000;                // while the server does not answer
const KEYS = ["method", "seed", "strip", "psi", "trunc_layers", "layers"];
const SAY = { seed: "seed", strip: "faces in the strip", psi: "psi", trunc_layers: "truncated layers" };

let info = null;          // /api/info
let state = null;         // the view the controls show and the URL holds
let wanted = null;        // {query, drag, t0, snapshot}: the newest view not yet sent
let inFlight = false;
let sending = null;       // the job in flight
let shown = { query: null, frame: null };   // the image on screen
let good = null;          // the last view the server rendered (a refused value falls back to it)
let restTimer = null;
let retryTimer = null;
let dragging = false;     // the pointer holds a range input
let dragEntry = false;    // this drag already has its history entry
let lastObjectUrl = null;
let shownColumns = [];    // the columns of the image on screen (base, then a face per method)
let measuring = false;

// What the browser tests and the benchmark read: nothing here changes behaviour.
const stats = window.studioStats = { inFlight: 0, maxInFlight: 0, sent: [], sentDrag: [], painted: [], frames: [],
                                     paintMs: [], serverMs: [], dropped: 0, errors: 0, refused: [] };
window.studioIdle = () => !inFlight && wanted === null && restTimer === null && retryTimer === null;

// ---- values: the server's rules, applied before anything is sent ------------------------------
function fmt(v) { return String(Math.round(v * 1000) / 1000); }

function checkInt(name, text, lo, hi) {
  const t = String(text).trim();
  const v = t === "" ? NaN : Number(t);
  if (!Number.isInteger(v)) return { error: `${name} must be a whole number in ${lo}..${hi}, got "${t}"` };
  if (v < lo || v > hi) {
    const fixed = Math.min(hi, Math.max(lo, v));
    return { value: fixed, error: `${name} must be in ${lo}..${hi}, got ${t}; set to ${fixed}` };
  }
  return { value: v };
}

function checkFloat(name, text, lo, hi) {
  const t = String(text).trim();
  const v = t === "" ? NaN : Number(t);
  if (!Number.isFinite(v)) return { error: `${name} must be a number in [${lo}, ${hi}], got "${t}"` };
  if (v < lo - 1e-6 || v > hi + 1e-6) {
    const fixed = Math.min(hi, Math.max(lo, v));
    return { value: fixed, error: `${name} must be in [${lo}, ${hi}], got ${t}; set to ${fixed}` };
  }
  return { value: v };
}

function methodNeeds(method) { return method === "both" ? ["directions", "finetuned"] : [method]; }
function methodLoaded(method) {
  return info.methods.includes(method) && methodNeeds(method).every((m) => info.available.includes(m));
}

function defaults() {
  const d = info.defaults;
  return { method: d.method, seed: d.seed, values: Object.assign({}, d.values), psi: d.psi,
           trunc_layers: d.trunc_layers, layers: d.layers, strip: d.strip };
}

// The state a query gives, every refused value corrected: {s, errors: {key: message}}.
function stateFromQuery(search) {
  const s = defaults();
  const errors = {};
  const p = new URLSearchParams(search);
  const known = new Set(KEYS.concat(info.properties));
  for (const key of new Set(p.keys())) {
    if (!known.has(key)) { errors.page = `the link's "${key}" is not a studio setting; left out`; continue; }
    const all = p.getAll(key);
    const text = all[0];
    if (all.length > 1) errors[key] = `${key} was given ${all.length} times; the first is used`;
    if (key === "method") {
      if (methodLoaded(text)) s.method = text;
      else errors.method = `method "${text}" is not available here; showing ${LABELS[s.method] || s.method}`;
    } else if (key === "seed" || key === "strip" || key === "trunc_layers") {
      const [lo, hi] = { seed: [0, info.max_seed], strip: [1, info.max_strip], trunc_layers: [0, info.num_layers] }[key];
      const r = checkInt(SAY[key], text, lo, hi);
      if (r.value !== undefined) s[key] = r.value;
      if (r.error) errors[key] = r.error + (r.value === undefined ? `; showing ${s[key]}` : "");
    } else if (key === "psi") {
      const r = checkFloat("psi", text, 0, 1);
      if (r.value !== undefined) s.psi = r.value;
      if (r.error) errors.psi = r.error + (r.value === undefined ? `; showing ${s.psi}` : "");
    } else if (key === "layers") {
      if (info.layer_choices.includes(text)) s.layers = text;
      else errors.layers = `layers "${text}" is not one of ${info.layer_choices.join(", ")}; showing ${s.layers}`;
    } else if (text !== "") {  // a property: empty = free
      const [lo, hi] = info.ranges[key];
      const r = checkFloat(NAMES[key], text, lo, hi);
      s.values[key] = r.value === undefined ? null : r.value;
      if (r.error) errors[key] = r.error + (r.value === undefined ? "; left free" : "");
    } else {
      s.values[key] = null;
    }
  }
  return { s, errors };
}

function queryOf(s) {
  const p = new URLSearchParams();
  p.set("method", s.method);
  p.set("seed", String(s.seed));
  for (const name of info.properties) p.set(name, s.values[name] === null ? "" : String(s.values[name]));
  p.set("psi", String(s.psi));
  p.set("trunc_layers", String(s.trunc_layers));
  p.set("layers", s.layers);
  p.set("strip", String(s.strip));
  return p.toString();
}

function clone(s) { return Object.assign({}, s, { values: Object.assign({}, s.values) }); }

// ---- messages next to controls: the only live regions of the page --------------------------------
function errorBox(key) {
  if (key === "page" || key === null || key === undefined) return $("page-error");
  return $(`err-${key}`) || $("page-error");
}
function setError(key, text) { errorBox(key).textContent = text; }
function clearError(key) { const box = errorBox(key); if (box.textContent) box.textContent = ""; }
function showErrors(errors) { for (const [key, text] of Object.entries(errors)) setError(key, text); }

// ---- building the controls ----------------------------------------------------------------------
function make(tag, props = {}, attrs = {}) {
  const el = Object.assign(document.createElement(tag), props);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  return el;
}

function buildProperties() {
  const box = $("sliders");
  info.properties.forEach((name, j) => {
    const [lo, hi] = info.ranges[name];
    const [low, high] = ENDS[name] || ["low", "high"];
    const row = make("div", { className: "prop", id: `prop-${name}` });
    const check = make("input", { type: "checkbox", id: `use-${name}` });
    const label = make("label", { htmlFor: check.id, textContent: NAMES[name] || name });
    const nameBox = make("div", { className: "name" });
    nameBox.append(check, label, make("span", { className: "free", textContent: "free" }));
    const num = make("input", { type: "number", className: "num", id: `num-${name}`, min: String(lo), max: String(hi),
                                step: "any" },
                     { "aria-label": `${NAMES[name] || name}, typed value from ${lo} (${low}) to ${hi} (${high})` });
    const lowEnd = make("span", { className: "end", textContent: low });
    const range = make("input", { type: "range", id: `slider-${name}`, min: String(lo), max: String(hi),
                                  step: String((hi - lo) / 100) },
                       { "aria-label": `${NAMES[name] || name}: ${low} to ${high}` });
    const highEnd = make("span", { className: "end", textContent: high });
    const err = make("span", { className: "err", id: `err-${name}` }, { role: "alert" });
    row.append(nameBox, num, lowEnd, range, highEnd, err);
    box.appendChild(row);

    range.addEventListener("input", () => {
      clearError(name);
      state.values[name] = parseFloat(range.value);
      if (dragging) moved(); else commit(true);
    });
    range.addEventListener("change", () => { dragging = false; settled(); });
    check.addEventListener("change", () => {
      clearError(name);
      state.values[name] = check.checked ? parseFloat(range.value) : null;
      commit(true);
    });
    num.addEventListener("change", () => {
      if (num.value.trim() === "" && num.validity.valid) {   // emptied: not requested
        clearError(name);
        state.values[name] = null;
        commit(true);
        return;
      }
      const r = checkFloat(NAMES[name] || name, num.value, lo, hi);
      if (r.value === undefined) {
        setError(name, `${r.error}; kept ${state.values[name] === null ? "free" : fmt(state.values[name])}`);
        showState();
        return;
      }
      if (r.error) setError(name, r.error); else clearError(name);
      state.values[name] = r.value;
      commit(true);
    });
    void j;
  });
  for (const name of info.properties) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = NAMES[name] || name;
    $("sweep-property").appendChild(option);
  }
}

function showState() {
  for (const radio of document.querySelectorAll("input[name=method]")) {
    radio.checked = radio.value === state.method;
    radio.disabled = !methodLoaded(radio.value);
    // optional methods: shown where step 7a made SeFa's file, where a step-7b regressor refines the directions
    if (radio.value === "sefa" || radio.value === "directions+refine") radio.parentElement.hidden = radio.disabled;
  }
  $("seed").value = String(state.seed);
  $("strip").value = String(state.strip);
  info.properties.forEach((name, j) => {
    const v = state.values[name];
    const row = $(`prop-${name}`);
    $(`use-${name}`).checked = v !== null;
    $(`slider-${name}`).value = String(v === null ? info.medians[j] : v);
    if (document.activeElement !== $(`num-${name}`) || v !== null) $(`num-${name}`).value = v === null ? "" : fmt(v);
    $(`num-${name}`).placeholder = v === null ? "free" : "";
    row.classList.toggle("off", v === null);
    row.querySelector(".free").hidden = v !== null;
  });
  $("psi").value = String(state.psi);
  $("psi-num").value = fmt(state.psi);
  $("trunc_layers").value = String(state.trunc_layers);
  $("trunc_layers-num").value = String(state.trunc_layers);
  $("layers").value = state.layers;
  const needs = methodNeeds(state.method);
  const directions = needs.includes("directions") || needs.includes("sefa");   // both edit w
  const finetuned = needs.includes("finetuned");
  $("layers-set").hidden = !directions;
  $("trunc-hint").textContent = `Of the generator's ${info.num_layers} synthesis layers, coarse first; ` +
    "0 = no truncation.";
  $("psi-hint").textContent = state.trunc_layers === 0
    ? "psi has no effect while 0 layers are truncated: raise \"truncated layers\" first."
    : `psi: 1 keeps this face's own style on the first ${state.trunc_layers} layers, 0 gives the average ` +
      "face there.";
  const free = [];
  if (directions) free.push(`${needs.includes("sefa") ? "SeFa" : "latent"} directions leave it to their edit ` +
                            "(held at this face's own value when step 7 fitted them to hold)");
  if (finetuned) free.push("the fine-tune uses its training median");
  $("free-hint").textContent = "Tick a property to request a value (drag, or type it). " +
    `"free" = not requested: ${free.join("; ")}.`;
  markStale();
}

// ---- changes: history entries, drags, the rest timer -------------------------------------------
function setUrl(query, push) {
  if (location.search.slice(1) === query) return;
  if (push) history.pushState(null, "", `?${query}`); else history.replaceState(null, "", `?${query}`);
}

function commit(push) {
  // a discrete change (click, tick, typed value, key press): its own history entry, the exact frame
  showState();
  const query = queryOf(state);
  setUrl(query, push);
  want(query, false);
}

function moved() {
  // a held slider: one history entry per drag, previews until it rests
  showState();
  const query = queryOf(state);
  setUrl(query, !dragEntry);
  dragEntry = true;
  want(query, true);
  clearTimeout(restTimer);
  restTimer = setTimeout(() => { restTimer = null; want(queryOf(state), false); }, REST_MS);
}

function settled() {
  clearTimeout(restTimer);
  restTimer = null;
  dragEntry = false;
  commit(false);  // the drag's entry already holds this view
}

// ---- rendering: one request in flight, newest wins ----------------------------------------------
function want(query, drag) {
  const inShown = shown.query === query && (drag || shown.frame === "exact");
  const onItsWay = inFlight && sending.query === query && (drag || !sending.drag);
  if ((!inFlight && inShown) || onItsWay) { wanted = null; markStale(); return; }
  wanted = { query, drag, t0: performance.now(), snapshot: clone(state) };
  markStale();
  if (!inFlight && retryTimer === null) pump();
}

function markStale() {
  const grid = $("grid");
  const current = state ? queryOf(state) : null;
  const stale = shown.query !== null && shown.query !== current;
  grid.classList.toggle("stale", stale);
  grid.classList.toggle("preview", shown.frame === "preview");
  const note = $("frame-note");
  if (stale) {
    note.textContent = "Updating: the image shows an earlier setting of the controls.";
  } else if (shown.frame === "preview") {
    note.textContent = `Preview (${info.preview_px} px per face, scaled): the exact image follows when the ` +
                       "slider rests.";
  }
  note.hidden = !(stale || shown.frame === "preview");
  $("busy").hidden = !inFlight;
  markMeasureStale();
}

async function pump() {
  if (wanted === null || inFlight) return;
  const job = wanted;
  wanted = null;
  inFlight = true;
  sending = job;
  stats.inFlight += 1;
  stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
  stats.sent.push(job.query);
  stats.sentDrag.push(job.drag);
  markStale();
  let retry = false;
  try {
    const response = await fetch(`/api/render?${job.query}${job.drag ? "&drag=1" : ""}`, { cache: "no-store" });
    if (response.status === 409) {         // another tab's newer view won; ours is still wanted
      stats.dropped += 1;
      if (wanted === null) wanted = job;
    } else if (!response.ok) {
      const body = await response.json().catch(() => ({ error: response.statusText }));
      stats.errors += 1;
      refused(job, body);
    } else {
      const frame = response.headers.get("X-Studio-Frame") || "exact";
      const layout = JSON.parse(response.headers.get("X-Studio-Layout"));
      const serverMs = parseFloat(response.headers.get("X-Studio-Server-Ms"));
      const blob = await response.blob();
      await paint(blob, layout, frame, job);
      const paintMs = performance.now() - job.t0;
      stats.painted.push(job.query);
      stats.frames.push(frame);
      stats.paintMs.push(paintMs);
      stats.serverMs.push(serverMs);
      shown = { query: job.query, frame };
      good = job.snapshot;
      clearError("page");
      setError("page", layout.unreached.length ? `latent directions stop short of ${layout.unreached.join(", ")} ` +
               "(beyond the edit's cap, which keeps w inside its distribution)" : "");
      document.body.dataset.ready = "1";
      $("timing").textContent = `${frame} frame: render ${serverMs.toFixed(0)} ms on the server; input to ` +
                                `paint ${paintMs.toFixed(0)} ms`;
      if (frame === "preview" && !dragging && restTimer === null && wanted === null) want(job.query, false);
    }
  } catch (err) {
    stats.errors += 1;
    retry = true;
    if (wanted === null) wanted = job;
    setError("page", `The studio server does not answer (${err.message}); retrying every second. ` +
                     "Start it again if it stopped.");
  } finally {
    stats.inFlight -= 1;
    inFlight = false;
    sending = null;
    markStale();
  }
  if (retry) {
    retryTimer = setTimeout(() => { retryTimer = null; if (wanted === null) wanted = { ...job, query: queryOf(state),
                                                                                        snapshot: clone(state) }; pump(); },
                            RETRY_MS);
  } else if (wanted !== null) {
    pump();
  }
}

// The server refused a value the checks let through (or a link from an older page): show it at its
// control, go back to the last value it rendered, and ask again.
function refused(job, body) {
  stats.refused.push(body);
  const key = body.key;
  const back = good || defaults();
  if (key && info.properties.includes(key)) {
    state.values[key] = back.values[key];
  } else if (key && KEYS.includes(key)) {
    state[key] = back[key];
  } else {
    setError("page", `error: ${body.error}`);
    return;
  }
  setError(key, `${body.error}; back to ${key in state ? state[key] : fmtValue(state.values[key])}`);
  showState();
  const query = queryOf(state);
  setUrl(query, false);
  if (query !== job.query) want(query, false);
}

function fmtValue(v) { return v === null ? "free" : fmt(v); }

function tileSize(rows, cols) {
  const want = TILE_PX[rows] || 128;
  const room = Math.floor(($("view").clientWidth - 4 * (cols - 1) - 8) / cols);
  return Math.max(48, Math.min(want, room));
}

async function paint(blob, layout, frame, job) {
  const url = URL.createObjectURL(blob);
  const img = $("sheet");
  const next = new Image();
  next.src = url;
  await next.decode();                      // decoded off-screen: the swap below paints at once
  img.src = url;
  const cols = layout.columns.length;
  const rows = layout.seeds.length;
  const face = next.naturalWidth / cols;    // px per face in the image (64 for a preview)
  const tile = tileSize(rows, cols);
  const grid = $("grid");
  grid.textContent = "";
  grid.classList.toggle("pixelated", frame === "exact" && face < tile);
  shownColumns = layout.columns;
  const query = job.query;
  layout.seeds.forEach((seed, r) => {
    const cell = document.createElement("div");
    cell.className = "cell";
    const label = document.createElement("span");
    label.className = "seed-label";
    label.textContent = r === 0 ? `seed ${seed} (main face)` : `seed ${seed}`;
    const tiles = document.createElement("div");
    tiles.className = "tiles";
    layout.columns.forEach((column, c) => {
      const box = document.createElement("div");
      box.className = "tile";
      const faceEl = document.createElement(r === 0 ? "div" : "button");
      faceEl.className = "face";
      if (r === 0) {
        faceEl.setAttribute("role", "img");
        faceEl.setAttribute("aria-label", `seed ${seed}, ${LABELS[column]}`);
      } else {
        faceEl.type = "button";
        faceEl.setAttribute("aria-label", `seed ${seed}, ${LABELS[column]}: make it the main face`);
        faceEl.addEventListener("click", () => { state.seed = seed; clearError("seed"); commit(true); });
      }
      faceEl.dataset.seed = String(seed);
      faceEl.dataset.column = column;
      faceEl.style.width = faceEl.style.height = `${tile}px`;
      faceEl.style.backgroundImage = `url("${url}")`;
      faceEl.style.backgroundSize = `${tile * cols}px ${tile * rows}px`;
      faceEl.style.backgroundPosition = `${-c * tile}px ${-r * tile}px`;
      const save = document.createElement("a");
      save.className = "save";
      save.href = `/api/save?${query}&face=${encodeURIComponent(column)}&tile=${r}`;
      save.download = "";                   // the server's name: seed and a short recipe hash
      save.textContent = "save";
      save.setAttribute("aria-label", `save seed ${seed}, ${LABELS[column]}`);
      box.append(faceEl, save);
      tiles.appendChild(box);
    });
    cell.append(label, tiles);
    grid.appendChild(cell);
  });
  drawCaptions(tile);
  $("view-hint").hidden = rows < 2;
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  if (lastObjectUrl) URL.revokeObjectURL(lastObjectUrl);
  lastObjectUrl = url;
}

// ---- measure: beside rendering, one at a time, marked when the view changed ------------------------
function describe(s) {
  const asked = info.properties.filter((n) => s.values[n] !== null).map((n) => `${NAMES[n]} ${fmt(s.values[n])}`);
  return `seed ${s.seed}, ${s.method === "both" ? "both methods" : LABELS[s.method]}` +
         (asked.length ? `, ${asked.join(", ")}` : ", nothing requested") +
         (s.trunc_layers ? `, psi ${fmt(s.psi)} on ${s.trunc_layers} layers` : "");
}

function markMeasureStale() {
  const out = $("measure-out");
  if (!out.dataset.query || !state) return;
  const stale = out.dataset.query !== queryOf(state);
  out.classList.toggle("stale", stale);
  const note = $("measure-stale");
  if (note) note.hidden = !stale;
}

async function measure() {
  if (measuring) return;
  measuring = true;
  const button = $("measure");
  button.disabled = true;
  const started = performance.now();
  const tick = () => { button.textContent = `Measuring… ${Math.round((performance.now() - started) / 1000)} s`; };
  tick();
  const timer = setInterval(tick, 500);
  const out = $("measure-out");
  const snapshot = clone(state);
  const query = queryOf(snapshot);
  try {
    const response = await fetch(`/api/measure?${query}`, { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) { setError("measure", `cannot measure: ${body.error}`); return; }
    clearError("measure");
    showMeasure(out, body, snapshot, query);
  } catch (err) {
    setError("measure", `cannot measure: ${err.message}`);
  } finally {
    clearInterval(timer);
    measuring = false;
    button.disabled = false;
    button.textContent = "Measure";
  }
}

function showMeasure(out, body, snapshot, query) {
  // One column per property and one row per face, so the table fits the controls column at laptop width
  // (a column per face and judge made it 8 columns of long titles, clipped there).
  const marks = body.landmarks || { rows: [], notes: [] };
  out.textContent = "";
  out.dataset.query = query;
  const table = document.createElement("table");
  const caption = table.createCaption();
  caption.textContent = `Measured: ${describe(snapshot)}`;
  const head = table.createTHead().insertRow();
  for (const text of [""].concat(body.properties.map((name) => NAMES[name] || name))) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = text;
    head.appendChild(th);
  }
  const addRow = (group, label, title, cells) => {
    const row = group.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = label;
    if (title) th.title = title;
    row.appendChild(th);
    for (const text of cells) row.insertCell().textContent = text;
  };
  const addGroup = (title, rows, missing) => {
    if (!rows.length) return;
    const group = table.createTBody();
    const th = document.createElement("th");
    th.scope = "rowgroup";
    th.colSpan = body.properties.length + 1;
    th.className = "group";
    th.textContent = title;
    group.insertRow().appendChild(th);
    for (const r of rows) {
      addRow(group, SHORT[r.face] || r.face, LABELS[r.face],
             r.measured.map((v) => (v === null ? missing : fmt(v))));
    }
  };
  const requested = table.createTBody();
  addRow(requested, "requested", "", body.requested.map((v) => (v === null ? "free" : fmt(v))));
  addGroup("scorer", body.rows, "n/a");              // which scorer and judge: the notes below
  addGroup("landmark judge", marks.rows, "-");
  const stale = document.createElement("p");
  stale.id = "measure-stale";
  stale.className = "note";
  stale.textContent = "The controls changed since: this table is for the view named above. Measure again.";
  stale.hidden = true;
  const note = document.createElement("p");
  note.className = "hint";
  note.textContent = `scorer: ${body.scorer} (${body.seconds.toFixed(1)} s)` +
                     (body.demo ? ". Demo models: these numbers mean nothing." : "");
  out.append(stale, table, note);
  if (marks.rows.length) {
    const line = document.createElement("p");
    line.className = "hint";
    line.textContent = `landmarks: ${marks.judge}, ${marks.scale} scale; "-" = not measured (no hair landmark, or no face)`;
    out.appendChild(line);
  }
  for (const text of marks.notes) {
    const line = document.createElement("p");
    line.className = "hint landmark-note";
    line.textContent = text;
    out.appendChild(line);
  }
  markMeasureStale();
}

// ---- sweep and expression sheet -------------------------------------------------------------------
async function exportSheet(kind) {
  const buttons = [$("sweep"), $("sheet-button")];
  const out = $("export-out");
  let extra = `kind=${kind}`;
  if (kind === "sweep") {
    const r = checkInt("values", $("sweep-count").value, 2, info.max_sweep);
    if (r.value === undefined) { setError("export", r.error); return; }
    if (r.error) setError("export", r.error); else clearError("export");
    $("sweep-count").value = String(r.value);
    extra += `&property=${$("sweep-property").value}&count=${r.value}`;
  } else {
    clearError("export");
  }
  const query = `${queryOf(state)}&${extra}`;
  for (const b of buttons) b.disabled = true;
  const which = kind === "sweep" ? $("sweep") : $("sheet-button");
  const label = which.textContent;
  which.textContent = "Rendering…";
  try {
    const response = await fetch(`/api/export?${query}&format=json`, { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) { setError("export", `cannot export: ${body.error}`); return; }
    out.textContent = "";
    const title = document.createElement("p");
    title.textContent = body.title;
    const img = document.createElement("img");
    img.alt = `${body.title}: contact sheet`;
    img.src = `/api/export?${query}&format=png`;
    const links = document.createElement("div");
    links.className = "row";
    for (const [format, text] of [["png", "PNG contact sheet"], ["webp", "animated WebP (lossless)"]]) {
      const a = document.createElement("a");
      a.className = "save";
      a.href = `/api/export?${query}&format=${format}`;
      a.download = "";
      a.textContent = `save ${text}`;
      links.appendChild(a);
    }
    const frames = document.createElement("div");
    frames.className = "frames";
    for (const f of body.frames) {
      const span = document.createElement("span");
      span.textContent = `${f.index}: ${f.label}` +
        (f.identity_distance === null || f.identity_distance === undefined ? "" : ` (identity ${fmt(f.identity_distance)})`);
      frames.appendChild(span);
    }
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = body.identity_note;
    out.append(title, links, img, frames, note);
  } catch (err) {
    setError("export", `cannot export: ${err.message}`);
  } finally {
    for (const b of buttons) b.disabled = false;
    which.textContent = label;
  }
}

// ---- start ----------------------------------------------------------------------------------------
function wire() {
  document.addEventListener("pointerdown", (ev) => {
    dragging = ev.target.type === "range";
    dragEntry = false;
  });
  document.addEventListener("pointerup", () => {
    if (dragging) { dragging = false; if (restTimer !== null) settled(); }
  });
  for (const radio of document.querySelectorAll("input[name=method]")) {
    radio.addEventListener("change", () => { clearError("method"); state.method = radio.value; commit(true); });
  }
  const intBox = (id, key, lo, hi) => {
    $(id).addEventListener("change", () => {
      const r = checkInt(SAY[key], $(id).value, lo(), hi());
      if (r.value === undefined) {
        setError(key, `${r.error}; kept ${state[key]}`);
        showState();
        return;
      }
      if (r.error) setError(key, r.error); else clearError(key);
      state[key] = r.value;
      commit(true);
    });
  };
  intBox("seed", "seed", () => 0, () => info.max_seed);
  intBox("strip", "strip", () => 1, () => info.max_strip);
  intBox("trunc_layers-num", "trunc_layers", () => 0, () => info.num_layers);
  $("prev").addEventListener("click", () => { clearError("seed"); state.seed = Math.max(0, state.seed - 1); commit(true); });
  $("next").addEventListener("click", () => {
    clearError("seed");
    state.seed = Math.min(info.max_seed, state.seed + 1);
    commit(true);
  });
  $("random").addEventListener("click", () => {
    clearError("seed");
    state.seed = Math.floor(Math.random() * 1000000);
    commit(true);
  });
  $("psi").addEventListener("input", () => { clearError("psi"); state.psi = parseFloat($("psi").value); if (dragging) moved(); else commit(true); });
  $("psi").addEventListener("change", () => { dragging = false; settled(); });
  $("psi-num").addEventListener("change", () => {
    const r = checkFloat("psi", $("psi-num").value, 0, 1);
    if (r.value === undefined) { setError("psi", `${r.error}; kept ${fmt(state.psi)}`); showState(); return; }
    if (r.error) setError("psi", r.error); else clearError("psi");
    state.psi = r.value;
    commit(true);
  });
  $("trunc_layers").addEventListener("input", () => {
    clearError("trunc_layers");
    state.trunc_layers = parseInt($("trunc_layers").value, 10);
    if (dragging) moved(); else commit(true);
  });
  $("trunc_layers").addEventListener("change", () => { dragging = false; settled(); });
  $("layers").addEventListener("change", () => { clearError("layers"); state.layers = $("layers").value; commit(true); });
  $("reset").addEventListener("click", () => {
    const d = defaults();
    for (const key of [...info.properties, ...KEYS]) clearError(key);
    state = Object.assign(d, { seed: state.seed, method: state.method });
    commit(true);
  });
  $("measure").addEventListener("click", measure);
  $("sweep").addEventListener("click", () => exportSheet("sweep"));
  $("sheet-button").addEventListener("click", () => exportSheet("sheet"));
  window.addEventListener("popstate", () => {
    const parsed = stateFromQuery(location.search);
    state = parsed.s;
    showErrors(parsed.errors);
    commit(false);
  });
  window.addEventListener("resize", () => { if (shown.query !== null) relayout(); });
}

function relayout() {
  // sizes follow the window; the image itself is the one on screen
  const faces = $("grid").querySelectorAll(".face");
  if (!faces.length) return;
  const cols = shownColumns.length;
  const rows = $("grid").children.length;
  const tile = tileSize(rows, cols);
  for (const el of faces) {
    const c = Array.prototype.indexOf.call(el.parentElement.parentElement.children, el.parentElement);
    const r = Array.prototype.indexOf.call($("grid").children, el.closest(".cell"));
    el.style.width = el.style.height = `${tile}px`;
    el.style.backgroundSize = `${tile * cols}px ${tile * rows}px`;
    el.style.backgroundPosition = `${-c * tile}px ${-r * tile}px`;
  }
  drawCaptions(tile);
}

function drawCaptions(tile) {
  // the column names over every cell of the grid's first row: wrapped rows of the strip line up below them
  const captions = $("captions");
  captions.textContent = "";
  const cells = Array.from($("grid").children);
  const top = cells.length ? cells[0].offsetTop : 0;
  const perRow = Math.max(1, cells.filter((cell) => cell.offsetTop === top).length);
  for (let i = 0; i < perRow; i++) {
    const group = document.createElement("div");
    group.className = "group";
    if (cells[i]) group.style.width = `${cells[i].offsetWidth}px`;
    for (const column of shownColumns) {
      const span = document.createElement("span");
      span.style.width = `${tile}px`;
      span.textContent = LABELS[column];
      group.appendChild(span);
    }
    captions.appendChild(group);
  }
}

async function start() {
  try {
    const response = await fetch("/api/info", { cache: "no-store" });
    info = await response.json();
  } catch (err) {
    setError("page", `The studio server does not answer (${err.message}); retrying.`);
    setTimeout(start, RETRY_MS);
    return;
  }
  clearError("page");
  $("trunc_layers").max = String(info.num_layers);
  $("trunc_layers-num").max = String(info.num_layers);
  $("seed").max = String(info.max_seed);
  $("strip").max = String(info.max_strip);
  $("sweep-count").max = String(info.max_sweep);
  for (const choice of info.layer_choices) {
    const option = document.createElement("option");
    option.value = choice;
    option.textContent = choice === "auto" ? "step 7a's choice" : `${choice} layers`;
    $("layers").appendChild(option);
  }
  $("models").textContent = `${info.available.map((m) => LABELS[m]).join(" + ") || "no control method"} on ` +
                            `${info.device}, ${info.resolution} px`;
  if (info.demo || info.notes.length) {
    $("demo").hidden = false;
    $("demo").textContent = info.notes.join("; ");
  }
  if (!info.measure.offered) {
    $("measure").hidden = true;
    $("measure-off").hidden = false;
    $("measure-off").textContent = `Measure is not offered: ${info.measure.why_not}`;
  }
  buildProperties();
  wire();
  const parsed = stateFromQuery(location.search);
  state = parsed.s;
  showErrors(parsed.errors);
  showState();
  setUrl(queryOf(state), false);            // the link now holds only what the page shows
  want(queryOf(state), false);
}

start();
