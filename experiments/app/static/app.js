// The latentspaces editor page: photo -> face -> inversion (live) -> sliders -> pasted-back photo.
// Talks only to its own server (experiments/app/server.py documents the API); every request names this
// tab's session, so two tabs are two independent editors.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2463c4", "#c44024", "#2f9e44", "#9c36b5", "#e8590c", "#1098ad", "#5c940d", "#d6336c", "#495057",
                "#364fc7"];

// An element with attributes and children (strings become text: names from files never become markup).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function newSessionId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const state = {
  session: sessionStorage.getItem("latentspaces-session") || newSessionId(),
  info: null,
  photo: null,        // {photo, name, faces, ...} of the upload
  face: 0,
  job: null,          // the running job's id
  since: {},          // space -> loss points received
  losses: {},         // space -> [loss per step]
  results: [],        // [{space, label, kind, recipe}] inverted for the chosen face
  recipeName: "",     // the recipe name the server gave the inversion ('quick, steps=50')
  alphas: {},         // slider key -> alpha
};
sessionStorage.setItem("latentspaces-session", state.session);

// ------------------------------------------------------------------------------------------ requests
function url(path, params) {
  const q = new URLSearchParams({s: state.session, ...params});
  return `${path}?${q}`;
}

async function call(path, params, options) {
  const response = await fetch(url(path, params), options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// ------------------------------------------------------------------------------------------ set-up
async function start() {
  const info = await (await call("/api/info", {})).json();
  state.info = info;
  const render = info.render_seconds ? ` · a render took ${info.render_seconds.toFixed(3)} s at start` : "";
  $("model").textContent = `generator ${info.generator} · ${info.resolution} px · ${info.sliders.length} directions` +
    ` · ${info.heads.length ? "heads " + info.heads.join(", ") : "no compensation heads loaded"}${render}`;
  for (const space of info.spaces) {
    const box = el("input", {type: "checkbox", value: space.key});
    box.checked = space.key === "FZPlus" || space.key === "WPlus";
    const start = space.encoder ? "; the paper recipe starts from its encoder" : "";
    const title = `edits along ${space.kind} directions${start}`;
    $("spaces").appendChild(el("label", {title}, box, ` ${space.label}`));
  }
  for (const [name, recipe] of Object.entries(info.recipes)) {
    const option = new Option(`${name} (${recipe.steps} steps)`, name);
    option.title = recipe.describe;
    $("recipe").add(option);
  }
  $("recipe").value = "quick";
  $("steps").max = info.max_steps;
  $("steps").value = info.recipes.quick.steps;
  $("recipe").addEventListener("change", () => { $("steps").value = info.recipes[$("recipe").value].steps; });
  for (const slider of info.sliders) addSlider(slider, info.slider_limit);
  for (const head of info.heads) $("head").add(new Option(head, head));
  if (info.heldout > 0) {
    for (let i = 0; i < info.heldout; i++) $("heldout").add(new Option(`#${i}`, i));
    $("heldout-pick").hidden = false;
  }
  $("upload").addEventListener("change", upload);
  $("use-heldout").addEventListener("click", useHeldout);
  $("invert").addEventListener("click", invert);
  $("cancel").addEventListener("click", cancel);
  $("head").addEventListener("change", () => { drawTiles(); renderAll(); });
  $("reset").addEventListener("click", resetSliders);
  $("result-source").addEventListener("change", updateResult);
  $("direction-file").addEventListener("change", addDirections);
  $("drag-steps").value = info.drag_steps;
  $("drag-steps").max = info.max_steps;
  $("drag-start").addEventListener("click", startDrag);
  $("drag-stop").addEventListener("click", cancel);
  $("drag-clear").addEventListener("click", () => { drag.pairs = []; drag.pending = null; drag.strokes = [];
                                                    drawDragCanvases(); });
  $("drag-undo").addEventListener("click", undoDrags);
}

async function addDirections() {
  const file = $("direction-file").files[0];
  if (!file) return;
  try {
    const response = await call("/api/directions", {name: file.name, kind: $("direction-kind").value},
                                {method: "POST", body: file});
    const added = (await response.json()).sliders;
    for (const slider of added) {
      state.info.sliders.push(slider);
      addSlider(slider, state.info.slider_limit);
    }
    showError("");
    $("direction-status").textContent = `${file.name}: ${added.length} slider${added.length === 1 ? "" : "s"} added ` +
      "(this tab only)";
    dimSliders();
  } catch (e) {
    showError(e.message);
  } finally {
    $("direction-file").value = "";
  }
}

function addSlider(slider, limit) {
  const input = el("input", {type: "range", min: -limit, max: limit, step: 0.1, value: 0, "aria-label": slider.label,
                             "data-key": slider.key});
  const row = el("div", {class: "slider", "data-kinds": slider.kinds.join(","),
                         title: `edits ${slider.kinds.join(" and ")} codes`},
                 el("span", {}, slider.label), input, el("output", {}, "0.0"));
  input.addEventListener("input", () => {
    state.alphas[slider.key] = Number(input.value);
    row.querySelector("output").textContent = Number(input.value).toFixed(1);
    renderAll();
  });
  $("sliders").appendChild(row);
}

function resetSliders() {
  for (const input of document.querySelectorAll(".slider input")) {
    input.value = 0;
    input.parentElement.querySelector("output").textContent = "0.0";
  }
  state.alphas = {};
  renderAll();
}

// ------------------------------------------------------------------------------------------ photo and face
async function showPhoto(response, what) {
  const photo = await response.json();
  state.photo = photo;
  state.results = [];
  showError("");
  $("photo-status").textContent = `${photo.name}: ${photo.width}x${photo.height}, ${photo.faces} face` +
    `${photo.faces === 1 ? "" : "s"}${photo.gray ? " (grayscale: edits are shown and pasted gray)" : ""}`;
  $("faces").innerHTML = "";
  for (let i = 0; i < photo.faces; i++) {
    const img = document.createElement("img");
    img.src = url("/api/face.png", {photo: photo.photo, face: i});
    img.alt = `face ${i}`;
    img.title = `face ${i}${i === 0 ? " (the most confident)" : ""}`;
    img.addEventListener("click", () => { if (!state.job) chooseFace(i); });
    $("faces").appendChild(img);
  }
  $("candidates").innerHTML = "";
  for (const line of photo.candidates) {
    const li = document.createElement("li");
    li.textContent = line;
    $("candidates").appendChild(li);
  }
  $("face-step").hidden = false;
  $("invert-step").hidden = false;
  chooseFace(0);
}

function chooseFace(i) {
  state.face = i;
  document.querySelectorAll("#faces img").forEach((img, k) => img.classList.toggle("chosen", k === i));
  state.results = [];
  $("edit-step").hidden = true;
  $("drag-step").hidden = true;
  $("result-step").hidden = true;
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  $("photo-status").textContent = `finding the faces of ${file.name} ...`;
  try {
    const response = await call("/api/photo", {name: file.name}, {method: "POST", body: file});
    await showPhoto(response);
  } catch (e) {
    showError(e.message);
    $("photo-status").textContent = `${file.name}: not used`;
  } finally {
    $("upload").value = "";   // the same file again is a new upload
  }
}

async function useHeldout() {
  try {
    await showPhoto(await call("/api/heldout", {index: $("heldout").value}, {method: "POST"}));
  } catch (e) { showError(e.message); }
}

// ------------------------------------------------------------------------------------------ inversion
async function invert() {
  const spaces = Array.from(document.querySelectorAll("#spaces input:checked"), (i) => i.value);
  const body = {photo: state.photo.photo, face: state.face, spaces, recipe: $("recipe").value,
                steps: Number($("steps").value)};
  try {
    const response = await call("/api/invert", {}, {method: "POST", body: JSON.stringify(body),
                                                     headers: {"Content-Type": "application/json"}});
    const answer = await response.json();
    showError("");
    state.job = answer.job;
    if (answer.recipe !== state.recipeName) state.results = [];   // the same recipe again: its results stay
    state.recipeName = answer.recipe;
    state.since = {};
    state.losses = {};
    busy(true);
    poll();
  } catch (e) { showError(e.message); }
}

function busy(running, kind = "invert") {   // while a job runs, the photo and face stay (its results are theirs)
  $("invert").disabled = running;
  $("cancel").disabled = !running || kind !== "invert";
  $("drag-start").disabled = running;
  $("drag-stop").disabled = !running || kind !== "drag";
  $("drag-undo").disabled = running;
  $("upload").disabled = running;
  $("use-heldout").disabled = running;
  $("faces").classList.toggle("locked", running);
}

async function cancel() {
  if (state.job) await call("/api/cancel", {job: state.job}, {method: "POST"}).catch((e) => showError(e.message));
}

async function poll() {
  let job;
  try {
    job = await (await call("/api/job", {job: state.job, since: JSON.stringify(state.since)})).json();
  } catch (e) { showError(e.message); return; }
  for (const [space, points] of Object.entries(job.losses)) {
    state.losses[space] = (state.losses[space] || []).concat(points);
    state.since[space] = state.losses[space].length;
  }
  const done = job.spaces.indexOf(job.space) + (job.steps ? job.step / job.steps : 1);
  $("progress").max = job.spaces.length;
  $("progress").value = Math.max(0, done);
  const label = (key) => state.info.spaces.find((s) => s.key === key).label;
  const losses = state.losses[job.space] || [];
  const speed = job.seconds_per_step ? ` · ${job.seconds_per_step.toFixed(3)} s/step` : "";
  const loss = losses.length ? ` · loss ${losses[losses.length - 1].toFixed(4)}` : "";
  $("job-status").textContent = job.state === "queued" ? "waiting for another tab's inversion ..." :
    `${job.space ? label(job.space) : ""} step ${job.step}/${job.steps}${speed}${loss}`;
  drawLosses();
  if (job.state === "queued" || job.state === "running") { setTimeout(poll, 200); return; }
  busy(false);
  state.job = null;
  const finished = job.spaces.filter((s, i) => job.state === "done" || i < job.spaces.indexOf(job.space));
  const known = new Set(state.results.map((r) => r.space));
  const order = state.info.spaces.map((s) => s.key);
  state.results = state.results.concat(finished.filter((key) => !known.has(key)).map((key) => ({
    space: key, label: label(key), kind: state.info.spaces.find((s) => s.key === key).kind})))
    .sort((a, b) => order.indexOf(a.space) - order.indexOf(b.space));
  if (job.state === "error") showError(job.error);
  if (job.state === "cancelled") $("job-status").textContent += " · cancelled";
  if (job.state === "done") $("job-status").textContent += " · done";
  if (state.results.length || state.info.heads.length) {
    $("edit-step").hidden = false;
    $("result-step").hidden = false;
    drawTiles();
    renderAll();
  }
  $("drag-step").hidden = !state.results.length;
  if (state.results.length) drawDragTiles();
}

// ------------------------------------------------------------------------------------------ drags
// Points are (x, y) pixels of the generator's R x R face; each canvas shows one space's face at 256 px.
const drag = {pairs: [], pending: null, strokes: [], images: {}, tracked: {}, job: null, frames: 0, painting: false,
              version: 0};
const SHOWN = 256;

function facePixel(canvas, event) {
  const box = canvas.getBoundingClientRect(), R = state.info.resolution;
  const clamp = (v) => Math.min(R - 1, Math.max(0, v));
  return [clamp((event.clientX - box.left) / box.width * R - 0.5), clamp((event.clientY - box.top) / box.height * R - 0.5)];
}

function drawDragTiles() {
  $("drag-tiles").innerHTML = "";
  for (const result of state.results) {
    const canvas = el("canvas", {width: SHOWN, height: SHOWN, class: "drag-canvas", "data-space": result.space,
                                 "aria-label": `${result.label}: click a handle, then its target`});
    canvas.addEventListener("mousedown", (e) => dragDown(canvas, e));
    canvas.addEventListener("mousemove", (e) => { if (drag.painting) paint(canvas, e); });
    $("drag-tiles").appendChild(el("div", {class: "tile"}, canvas, el("div", {}, result.label)));
    loadFace(result.space, url("/api/render.png", {photo: state.photo.photo, face: state.face, space: result.space,
                                                  recipe: state.recipeName, edit: "{}"}));
  }
}
document.addEventListener("mouseup", () => { drag.painting = false; });

function loadFace(space, source) {
  const image = new Image();
  image.onload = () => { drag.images[space] = image; drawDragCanvases(); };
  image.src = source;
}

function dragDown(canvas, event) {
  if (drag.job) return;
  if ($("drag-brush").checked) { drag.painting = true; paint(canvas, event); return; }
  const point = facePixel(canvas, event);
  if (drag.pending === null) {
    if (drag.pairs.length >= state.info.max_drag_pairs) return;
    drag.pending = point;
  } else {
    drag.pairs.push([...drag.pending, ...point]);
    drag.pending = null;
  }
  drag.tracked = {};
  drawDragCanvases();
}

function paint(canvas, event) {
  const [x, y] = facePixel(canvas, event), r = state.info.resolution / 10;
  const last = drag.strokes[drag.strokes.length - 1];
  if (last && Math.hypot(last[0] - x, last[1] - y) < r / 3) return;   // a stroke per third of the brush
  drag.strokes.push([x, y, r]);
  drawDragCanvases();
}

function drawDragCanvases() {
  const k = SHOWN / state.info.resolution, at = (v) => (v + 0.5) * k;
  for (const canvas of document.querySelectorAll("canvas.drag-canvas")) {
    const g = canvas.getContext("2d"), space = canvas.dataset.space;
    g.clearRect(0, 0, SHOWN, SHOWN);
    if (drag.images[space]) g.drawImage(drag.images[space], 0, 0, SHOWN, SHOWN);
    g.fillStyle = "rgba(255, 255, 255, 0.25)";
    for (const [x, y, r] of drag.strokes) { g.beginPath(); g.arc(at(x), at(y), r * k, 0, 2 * Math.PI); g.fill(); }
    const dot = (x, y, colour) => { g.fillStyle = colour; g.beginPath(); g.arc(at(x), at(y), 4, 0, 2 * Math.PI); g.fill(); };
    const tracked = drag.tracked[space];
    drag.pairs.forEach(([hx, hy, tx, ty], i) => {
      const [px, py] = (tracked && tracked[i]) || [hx, hy];   // tracked: once the drag has rendered
      g.strokeStyle = "#fff";
      g.beginPath(); g.moveTo(at(px), at(py)); g.lineTo(at(tx), at(ty)); g.stroke();
      dot(px, py, "#d11"); dot(tx, ty, "#15d");
    });
    if (drag.pending) dot(drag.pending[0], drag.pending[1], "#d11");
  }
}

async function startDrag() {
  if (!drag.pairs.length) { showError("click a handle on a face, then its target, before dragging"); return; }
  const body = {photo: state.photo.photo, face: state.face, spaces: state.results.map((r) => r.space),
                recipe: state.recipeName, pairs: drag.pairs, mask: drag.strokes, steps: Number($("drag-steps").value)};
  try {
    const response = await call("/api/drag", {}, {method: "POST", body: JSON.stringify(body),
                                                   headers: {"Content-Type": "application/json"}});
    drag.job = state.job = (await response.json()).job;
    drag.frames = 0;
    showError("");
    busy(true, "drag");
    pollDrag();
  } catch (e) { showError(e.message); }
}

async function pollDrag() {
  let job;
  try {
    job = await (await call("/api/job", {job: drag.job})).json();
  } catch (e) { showError(e.message); return; }
  const label = (key) => state.info.spaces.find((s) => s.key === key).label;
  if (job.space) {
    drag.tracked[job.space] = job.points;
    const far = job.distances.length ? Math.max(...job.distances).toFixed(1) : "-";
    const speed = job.seconds_per_step ? ` · ${job.seconds_per_step.toFixed(3)} s/step` : "";
    $("drag-status").textContent = `${label(job.space)} step ${job.step}/${job.steps} · farthest handle ${far} px` +
      `${speed}`;
    if (job.frames > drag.frames) {
      drag.frames = job.frames;
      loadFace(job.space, url("/api/drag.png", {job: drag.job, frame: job.frames}));
    } else drawDragCanvases();
  }
  if (job.state === "queued" || job.state === "running") { setTimeout(pollDrag, 150); return; }
  busy(false);
  drag.job = state.job = null;
  if (job.state === "error") showError(job.error);
  $("drag-status").textContent += job.state === "cancelled" ? " · stopped" : job.state === "done" ? " · done" : "";
  $("drag-status").dataset.state = job.state;
  drag.pairs = [];
  drag.tracked = {};
  drag.version += 1;
  drawDragTiles();   // the dragged faces; the sliders, the paste-back and the bundle now start from them
  renderAll();
}

async function undoDrags() {
  try {
    for (const result of state.results) {
      await call("/api/undrag", {photo: state.photo.photo, face: state.face, space: result.space,
                                 recipe: state.recipeName}, {method: "POST"});
    }
    $("drag-status").textContent = "drags undone";
    drag.version += 1;
    drawDragTiles();
    renderAll();
  } catch (e) { showError(e.message); }
}

function drawLosses() {
  const canvas = $("loss");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const all = Object.values(state.losses).flat().filter((v) => v > 0);
  if (!all.length) return;
  const lo = Math.log(Math.min(...all)), hi = Math.log(Math.max(...all)) + 1e-9;
  const steps = Math.max(2, ...Object.values(state.losses).map((v) => v.length));
  Object.entries(state.losses).forEach(([space, values], k) => {
    g.strokeStyle = COLORS[k % COLORS.length];
    g.beginPath();
    values.forEach((v, i) => {
      const x = 30 + (canvas.width - 40) * i / (steps - 1);
      const y = 8 + (canvas.height - 24) * (1 - (Math.log(Math.max(v, 1e-12)) - lo) / (hi - lo));
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = g.strokeStyle;
    g.fillText(state.info.spaces.find((s) => s.key === space).label, 34 + 70 * k, canvas.height - 4);
  });
  g.fillStyle = "#555";
  g.fillText(Math.exp(hi).toPrecision(2), 2, 12);
  g.fillText(Math.exp(lo).toPrecision(2), 2, canvas.height - 14);
}

// ------------------------------------------------------------------------------------------ edits
function tileParams(tile) {
  const params = {photo: state.photo.photo, face: state.face, edit: JSON.stringify(state.alphas)};
  if (tile.head) params.head = tile.head; else { params.space = tile.space; params.recipe = state.recipeName; }
  return params;
}

function tiles() {
  const list = state.results.map((r) => ({...r}));
  const head = $("head").value;
  if (head) list.push({head, label: `W+ encoder + ${head}`, kind: "w"});
  return list;
}

function drawTiles() {
  $("tiles").innerHTML = "";
  const source = $("result-source");
  const chosen = source.value;
  source.innerHTML = "";
  const face = url("/api/face.png", {photo: state.photo.photo, face: state.face});   // the target, for comparison
  $("tiles").appendChild(el("div", {class: "tile"}, el("img", {alt: "the target face", src: face}),
                            el("div", {}, `target (face ${state.face})`), el("div", {class: "note"})));
  tiles().forEach((tile, i) => {
    $("tiles").appendChild(el("div", {class: "tile"}, el("img", {alt: `${tile.label}, edited`, "data-tile": i}),
                              el("div", {}, tile.label), el("div", {class: "note"})));
    source.add(new Option(tile.label, i));
  });
  if (chosen && chosen < source.options.length) source.value = chosen;
  dimSliders();
}

function dimSliders() {   // a slider no shown tile can use (SeFa has no Z version; S takes S directions) is dimmed
  const kinds = new Set(tiles().map((t) => t.kind));
  for (const row of document.querySelectorAll(".slider")) {
    row.classList.toggle("unused", !row.dataset.kinds.split(",").some((k) => kinds.has(k)));
  }
}

const inflight = new Map();   // tile index -> {busy, again}

function renderAll() {
  tiles().forEach((tile, i) => renderTile(tile, i));
  clearTimeout(state.resultTimer);
  state.resultTimer = setTimeout(updateResult, 400);
}

async function renderTile(tile, i) {
  const slot = inflight.get(i) || {busy: false, again: false};
  inflight.set(i, slot);
  if (slot.busy) { slot.again = true; return; }   // the newest slider values are sent when this one returns
  slot.busy = true;
  const img = document.querySelector(`img[data-tile="${i}"]`);
  const note = img && img.parentElement.querySelector(".note");
  const moved = Object.entries(state.alphas).filter(([k, v]) => v !== 0 &&
    state.info.sliders.find((s) => s.key === k).kinds.includes(tile.kind));
  if (note) note.textContent = moved.length || !Object.values(state.alphas).some((v) => v) ? "" :
    `no moved slider edits ${tile.kind} codes`;
  const t0 = performance.now();
  try {
    const response = await call("/api/render.png", tileParams(tile));
    const blob = await response.blob();
    if (img) {
      const old = img.src;
      img.src = URL.createObjectURL(blob);
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      img.dataset.renders = Number(img.dataset.renders || 0) + 1;
    }
    const seconds = (performance.now() - t0) / 1000;
    $("render-status").textContent = `last render ${seconds.toFixed(3)} s (server ${
      Number(response.headers.get("X-Render-Seconds")).toFixed(3)} s)`;
    $("render-status").dataset.seconds = seconds;
  } catch (e) {
    showError(e.message);
  } finally {
    slot.busy = false;
    if (slot.again) { slot.again = false; renderTile(tiles()[i] || tile, i); }
  }
}

function updateResult() {
  const list = tiles();
  const tile = list[Number($("result-source").value) || 0];
  if (!tile) return;
  const params = {...tileParams(tile), v: drag.version};   // v: a drag changed the face behind the same address
  $("pasted").src = url("/api/paste.png", params);
  $("download-png").href = url("/api/paste.png", params);
  const bundle = $("download-bundle");
  if (tile.head) {
    bundle.classList.add("disabled");
    bundle.removeAttribute("href");
    $("replay").textContent = `${tile.head}'s edit is the head's own synthesis; \`latentspaces edit\` replays ` +
      "space edits only, so there is no replay bundle for it";
  } else {
    bundle.classList.remove("disabled");
    bundle.href = url("/api/bundle.zip", params);
    $("replay").textContent = "the bundle replays this edit: unzip it, then run the command in its settings.json " +
      "(latentspaces edit ... --alphas=1 --paste-back; after a drag, first its replay_drags: latentspaces drag ...)";
  }
}

start().catch((e) => showError(`the editor could not start: ${e.message}`));
