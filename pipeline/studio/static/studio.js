// The studio page: state in the URL, one render in flight, the newest wanted view wins.
//
// Every control change computes the view's query and calls want(). pump() sends it only when no
// render is in flight; while one is, later changes just overwrite `wanted`, so a long drag sends
// at most one request per finished render and the last image painted is the last view wanted.
"use strict";

const $ = (id) => document.getElementById(id);
const LABELS = { base: "base (unedited)", directions: "latent directions", finetuned: "fine-tuned" };
const TILE_PX = { 1: 256, 2: 192 };  // display size of a face by strip length (larger strips: 128)

let info = null;          // /api/info
let state = null;         // the current view, as shown in the controls and the URL
let wanted = null;        // {query, t0}: the newest view not yet sent
let inFlight = false;
let lastObjectUrl = null;
let lastPainted = null;   // query of the image on screen
let sending = null;       // query of the render in flight
let dragging = false;     // a range input is held: preview one face, the full strip on release

// What the browser test and the benchmark read: nothing here changes behaviour.
const stats = window.studioStats = { inFlight: 0, maxInFlight: 0, sent: [], painted: [], paintMs: [],
                                     serverMs: [], dropped: 0, errors: 0 };
window.studioIdle = () => !inFlight && wanted === null;

function setStatus(text) { $("status").textContent = text; }

function fmt(v) { return String(Math.round(v * 1000) / 1000); }

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

function stateFromUrl() {
  const d = info.defaults;
  const s = { method: d.method, seed: d.seed, values: Object.assign({}, d.values), psi: d.psi,
              trunc_layers: d.trunc_layers, layers: d.layers, strip: d.strip };
  const p = new URLSearchParams(location.search);
  if (p.has("method")) s.method = p.get("method");
  for (const key of ["seed", "trunc_layers", "strip"]) if (p.has(key)) s[key] = parseInt(p.get(key), 10);
  if (p.has("psi")) s.psi = parseFloat(p.get("psi"));
  if (p.has("layers")) s.layers = p.get("layers");
  for (const name of info.properties) {
    if (p.has(name)) s.values[name] = p.get(name) === "" ? null : parseFloat(p.get(name));
  }
  return s;  // bad values go to the server as they are: its 400 says what is wrong
}

// ---- building the controls ----------------------------------------------------------------
function buildSliders() {
  const box = $("sliders");
  for (const name of info.properties) {
    const [lo, hi] = info.ranges[name];
    const row = document.createElement("label");
    row.className = "slider prop";
    row.innerHTML = `<input type="checkbox" title="request this property"><span></span>` +
                    `<input type="range" step="0.01"><output></output>`;
    row.children[1].textContent = name.replace("_", " ");
    const [check, , range, out] = row.children;
    check.id = `use-${name}`;
    range.id = `slider-${name}`;
    range.min = String(lo);
    range.max = String(hi);
    range.step = String((hi - lo) / 100);
    range.addEventListener("input", (ev) => {
      state.values[name] = parseFloat(range.value);
      changed(ev);
    });
    range.addEventListener("change", (ev) => {  // released: the exact full view (after strip previews)
      dragging = false;
      changed(ev);
    });
    check.addEventListener("change", (ev) => {
      state.values[name] = check.checked ? parseFloat(range.value) : null;
      changed(ev);
    });
    box.appendChild(row);
    void out;
  }
}

function showState() {
  for (const radio of document.querySelectorAll("input[name=method]")) {
    radio.checked = radio.value === state.method;
    const needs = radio.value === "both" ? ["directions", "finetuned"] : [radio.value];
    radio.disabled = !needs.every((m) => info.available.includes(m));
  }
  $("seed").value = String(state.seed);
  $("strip").value = String(state.strip);
  info.properties.forEach((name, j) => {
    const v = state.values[name];
    const row = $(`slider-${name}`).parentElement;
    $(`use-${name}`).checked = v !== null;
    $(`slider-${name}`).value = String(v === null ? info.medians[j] : v);
    row.classList.toggle("off", v === null);
    row.querySelector("output").textContent = v === null ? "free" : fmt(v);
  });
  $("psi").value = String(state.psi);
  $("psi-out").textContent = fmt(state.psi);
  $("trunc_layers").value = String(state.trunc_layers);
  $("trunc-out").textContent = String(state.trunc_layers);
  $("layers").value = state.layers;
  $("layers-row").hidden = state.method === "finetuned";
  const saves = $("saves");
  saves.textContent = "Save: ";
  const faces = ["base"].concat(state.method === "both" ? ["directions", "finetuned"] : [state.method]);
  for (const face of faces) {
    const a = document.createElement("a");
    a.className = "save";
    a.id = `save-${face}`;
    a.href = `/api/save?${queryOf(state)}&face=${face}`;
    a.download = `studio_${face}_seed${state.seed}.png`;
    a.textContent = face === "base" ? "base" : LABELS[face];
    saves.appendChild(a);
  }
}

function changed(ev) {
  showState();
  const query = queryOf(state);
  history.replaceState(null, "", `?${query}`);
  // While a slider is held, a strip previews its first face only (one image per column, fast);
  // the release sends the full view, so the final image is exact.
  const preview = dragging && state.strip > 1 ? queryOf(Object.assign({}, state, { strip: 1 })) : query;
  want(preview, ev && ev.timeStamp ? ev.timeStamp : performance.now());
}

// ---- rendering: one request in flight, newest wins ------------------------------------------
function want(query, t0) {
  // Already on screen, or on its way (a slider's "change" after its last "input"): nothing to send.
  if ((!inFlight && query === lastPainted) || (inFlight && query === sending)) { wanted = null; return; }
  wanted = { query, t0 };
  if (!inFlight) pump();
}

async function pump() {
  if (wanted === null || inFlight) return;
  const job = wanted;
  wanted = null;
  inFlight = true;
  sending = job.query;
  stats.inFlight += 1;
  stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
  stats.sent.push(job.query);
  try {
    const response = await fetch(`/api/render?${job.query}`, { cache: "no-store" });
    if (response.status === 409) {         // another tab's newer view won; ours is still wanted
      stats.dropped += 1;
      if (wanted === null) wanted = job;
    } else if (!response.ok) {
      const body = await response.json().catch(() => ({ error: response.statusText }));
      stats.errors += 1;
      setStatus(`error ${response.status}: ${body.error}`);
    } else {
      const layout = JSON.parse(response.headers.get("X-Studio-Layout"));
      const serverMs = parseFloat(response.headers.get("X-Studio-Server-Ms"));
      const blob = await response.blob();
      await paint(blob, layout);
      const paintMs = performance.now() - job.t0;
      stats.painted.push(job.query);
      lastPainted = job.query;
      stats.paintMs.push(paintMs);
      stats.serverMs.push(serverMs);
      setStatus(layout.unreached.length ? `latent directions stop short of ${layout.unreached.join(", ")} ` +
                `(beyond the edit's cap, which keeps w inside its distribution)` : "");
      document.body.dataset.ready = "1";
      $("timing").textContent = `render ${serverMs.toFixed(0)} ms on the server; input to paint ` +
                                `${paintMs.toFixed(0)} ms`;
    }
  } catch (err) {
    stats.errors += 1;
    setStatus(`the studio server does not answer (${err.message}); is it still running?`);
  } finally {
    stats.inFlight -= 1;
    inFlight = false;
  }
  if (wanted !== null) pump();
}

async function paint(blob, layout) {
  const img = $("sheet");
  const url = URL.createObjectURL(blob);
  const next = new Image();
  next.src = url;
  await next.decode();                      // decoded off-screen: the swap below paints at once
  const tile = TILE_PX[layout.seeds.length] || 128;
  img.src = url;
  img.style.width = `${tile * layout.columns.length}px`;
  const captions = $("captions");
  captions.textContent = "";
  for (const column of layout.columns) {
    const span = document.createElement("span");
    span.style.width = `${tile}px`;
    span.textContent = LABELS[column];
    captions.appendChild(span);
  }
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  if (lastObjectUrl) URL.revokeObjectURL(lastObjectUrl);
  lastObjectUrl = url;
}

// ---- measure --------------------------------------------------------------------------------
async function measure() {
  const out = $("measure-out");
  out.textContent = "measuring (the first time loads the scorer)...";
  try {
    const response = await fetch(`/api/measure?${queryOf(state)}`, { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) { out.textContent = `cannot measure: ${body.error}`; return; }
    const marks = body.landmarks || { rows: [], notes: [] };
    const table = document.createElement("table");
    const head = table.insertRow();
    const titles = ["property", "requested"].concat(body.rows.map((r) => `measured: ${LABELS[r.face]}`),
                                                     marks.rows.map((r) => `landmarks: ${LABELS[r.face]}`));
    for (const text of titles) {
      const th = document.createElement("th");
      th.textContent = text;
      head.appendChild(th);
    }
    body.properties.forEach((name, j) => {
      const row = table.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = body.requested[j] === null ? "free" : fmt(body.requested[j]);
      for (const r of body.rows) row.insertCell().textContent = r.measured[j] === null ? "n/a" : fmt(r.measured[j]);
      for (const r of marks.rows) row.insertCell().textContent = r.measured[j] === null ? "-" : fmt(r.measured[j]);
    });
    out.textContent = "";
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = `scorer: ${body.scorer} (${body.seconds.toFixed(1)} s)` +
                       (body.demo ? ". Demo models: these numbers mean nothing." : "");
    out.appendChild(table);
    out.appendChild(note);
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
  } catch (err) {
    out.textContent = `cannot measure: ${err.message}`;
  }
}

// ---- start ----------------------------------------------------------------------------------
function wire() {
  document.addEventListener("pointerdown", (ev) => { dragging = ev.target.type === "range"; });
  document.addEventListener("pointerup", () => { dragging = false; });
  for (const radio of document.querySelectorAll("input[name=method]")) {
    radio.addEventListener("change", (ev) => { state.method = radio.value; changed(ev); });
  }
  $("seed").addEventListener("change", (ev) => {
    const v = parseInt($("seed").value, 10);
    if (Number.isInteger(v) && v >= 0) { state.seed = v; changed(ev); }
  });
  $("prev").addEventListener("click", (ev) => { state.seed = Math.max(0, state.seed - 1); changed(ev); });
  $("next").addEventListener("click", (ev) => { state.seed += 1; changed(ev); });
  $("random").addEventListener("click", (ev) => {
    state.seed = Math.floor(Math.random() * 1000000);
    changed(ev);
  });
  $("strip").addEventListener("change", (ev) => {
    const v = parseInt($("strip").value, 10);
    if (v >= 1 && v <= info.max_strip) { state.strip = v; changed(ev); }
  });
  $("psi").addEventListener("input", (ev) => { state.psi = parseFloat($("psi").value); changed(ev); });
  $("trunc_layers").addEventListener("input", (ev) => {
    state.trunc_layers = parseInt($("trunc_layers").value, 10);
    changed(ev);
  });
  $("layers").addEventListener("change", (ev) => { state.layers = $("layers").value; changed(ev); });
  $("measure").addEventListener("click", measure);
}

async function start() {
  try {
    const response = await fetch("/api/info", { cache: "no-store" });
    info = await response.json();
  } catch (err) {
    setStatus(`the studio server does not answer (${err.message})`);
    return;
  }
  $("trunc_layers").max = String(info.num_layers);
  for (const choice of info.layer_choices) {
    const option = document.createElement("option");
    option.value = choice;
    option.textContent = choice === "auto" ? "step 7's choice" : `${choice} layers`;
    $("layers").appendChild(option);
  }
  $("models").textContent = `${info.available.join(" + ") || "no control method"} on ${info.device}, ` +
                            `${info.resolution} px`;
  if (info.demo || info.notes.length) {
    $("demo").hidden = false;
    $("demo").textContent = info.notes.join("; ");
  }
  buildSliders();
  wire();
  state = stateFromUrl();
  changed(null);
}

start();
