// umedsam web app: draw boxes on a canvas, ask the server for masks, show and download them.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,        // session description from the server
  z: 0,              // current slice
  boxes: [],         // {x0, y0, x1, y1, z0, z1, clicks: [{x, y, z, label}]}
  selected: -1,      // index of the object that clicks correct
  history: [],       // interactions for undo: {kind: "box"|"click"|"delete"|"rename", ...}
  redo: [],          // undone interactions, re-applied by redo; a new interaction clears it
  tool: "box",       // "box" drag a box; "click"/"scribble": left positive, shift/right negative
  stroke: null,      // the scribble being drawn: {points, label, radius, z}
  review: [],        // {label, z, score}: what "Next to check" visits, least confident first
  reviewed: new Set(), // "label:z" already visited
  clicksAllowed: false,
  segmentedKey: null, // JSON of the boxes the current mask belongs to
  objectCount: 0,    // objects in the last segmentation
  version: 0,
  base: null,        // HTMLImageElement of the current slice
  baseKey: null,     // "session:z" of state.base
  mask: null,        // HTMLImageElement of the current mask slice
  heat: null,        // HTMLImageElement of the current uncertainty slice
  hasHeat: false,    // the last segmentation came with an uncertainty map
  drag: null,
  scale: 1,
  busy: false,
  pending: false,
  loadToken: 0,
  maxMb: 0,
};

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function api(url, options = {}) {
  const resp = await fetch(url, options);
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json") ? await resp.json() : null;
  if (!resp.ok) throw new Error((body && body.error) || `${resp.status} ${resp.statusText}`);
  return body;
}

// Same colours as umedsam.inference.overlay.label_color (golden-ratio hue steps, OpenCV HSV).
function labelColor(label) {
  const hue = Math.floor(((label * 0.618033988749895) % 1) * 179) * 2;
  const s = 220 / 255;
  const f = (n) => {
    const k = (n + hue / 60) % 6;
    return Math.round(255 * (1 - s * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return `rgb(${f(5)}, ${f(3)}, ${f(1)})`;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

function boxArrays() {
  return state.boxes.map((b) =>
    state.info.is_3d ? [b.x0, b.y0, b.z0, b.x1, b.y1, b.z1] : [b.x0, b.y0, b.x1, b.y1]);
}

function clickArrays() {
  return state.boxes.map((b) => b.clicks.map((c) => {
    if (c.stroke) {
      const entry = { stroke: c.stroke, label: c.label, radius: c.radius };
      if (c.thin) entry.thin = true;
      return state.info.is_3d ? { ...entry, z: c.z } : entry;
    }
    return state.info.is_3d ? [c.x, c.y, c.z, c.label] : [c.x, c.y, c.label];
  }));
}

function promptKey() {
  return JSON.stringify([boxArrays(), clickArrays(), $("overwrite").checked]);
}

function maskIsCurrent() {
  return state.segmentedKey !== null && state.segmentedKey === promptKey();
}

function setTool(tool) {
  if (tool !== "box" && !state.clicksAllowed) return;
  state.tool = tool;
  $("tool-box").checked = tool === "box";
  $("tool-click").checked = tool === "click";
  $("tool-scribble").checked = tool === "scribble";
  document.body.dataset.tool = tool;
}

function drawStroke(ctx, c, s) {
  const positive = c.thin ? "rgba(255, 220, 0, 0.9)" : "rgba(46, 204, 64, 0.8)";  // thin: yellow
  ctx.strokeStyle = c.label ? positive : "rgba(255, 65, 54, 0.8)";
  ctx.lineWidth = Math.max(2, 2 * c.radius * s);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  c.stroke.forEach(([x, y], k) => (k ? ctx.lineTo((x + 0.5) * s, (y + 0.5) * s)
    : ctx.moveTo((x + 0.5) * s, (y + 0.5) * s)));
  if (c.stroke.length === 1) ctx.lineTo((c.stroke[0][0] + 0.6) * s, (c.stroke[0][1] + 0.5) * s);
  ctx.stroke();
}

// Every interaction is undoable and redoable: a box, a click, a deletion, a rename.
function record(entry) {
  state.history.push(entry);
  state.redo = [];
}

function undo() {
  const last = state.history.pop();
  if (!last) return;
  if (last.kind === "click") last.click = state.boxes[last.index].clicks.pop();
  else if (last.kind === "box") last.box = state.boxes.pop();
  else if (last.kind === "delete") state.boxes.splice(last.index, 0, last.box);
  else if (last.kind === "rename") state.boxes[last.index].name = last.before;
  state.redo.push(last);
  state.selected = Math.min(Math.max(state.selected, 0), state.boxes.length - 1);
  renderBoxList();
  historyChanged();
}

function redo() {
  const next = state.redo.pop();
  if (!next) return;
  if (next.kind === "click") state.boxes[next.index].clicks.push(next.click);
  else if (next.kind === "box") state.boxes.push(next.box);
  else if (next.kind === "delete") state.boxes.splice(next.index, 1);
  else if (next.kind === "rename") state.boxes[next.index].name = next.after;
  state.history.push(next);
  state.selected = Math.min(Math.max(state.selected, 0), state.boxes.length - 1);
  renderBoxList();
  historyChanged();
}

function deleteObject(index) {
  const [box] = state.boxes.splice(index, 1);
  record({ kind: "delete", index, box });
  state.selected = Math.min(state.selected, state.boxes.length - 1);
  renderBoxList();
  historyChanged();
}

// Undo, redo and delete take a state back: once a mask exists it is re-segmented at once (in 3D
// too, where boxes otherwise wait for the Segment button), so the mask shown and downloaded is
// never one the user took back. Until the new mask arrives, downloads stay disabled.
function historyChanged() {
  if ($("auto").checked || state.segmentedKey !== null) segment();
}

// ----- drawing -------------------------------------------------------------------------
function layout() {
  if (!state.info) return;
  const wrap = $("canvas-wrap");
  const maxW = Math.max(200, wrap.clientWidth - 4);
  const maxH = Math.max(300, window.innerHeight - 240);
  state.scale = Math.min(maxW / state.info.width, maxH / state.info.height);
  const canvas = $("canvas");
  canvas.width = Math.round(state.info.width * state.scale);
  canvas.height = Math.round(state.info.height * state.scale);
  draw();
}

function draw() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!state.info || !state.base) return;
  ctx.imageSmoothingEnabled = state.scale < 1;
  ctx.drawImage(state.base, 0, 0, canvas.width, canvas.height);
  if (state.mask && $("show-mask").checked && state.segmentedKey !== null) {
    ctx.globalAlpha = Number($("opacity").value) / 100;
    ctx.drawImage(state.mask, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 1;
  }
  if (state.heat && $("show-uncertainty").checked && state.segmentedKey !== null) {
    ctx.globalAlpha = 0.85;
    ctx.drawImage(state.heat, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 1;
  }
  const s = state.scale;
  state.boxes.forEach((b, i) => {
    for (const c of b.clicks) {
      if (state.info.is_3d && c.z !== state.z) continue;
      if (c.stroke) {
        drawStroke(ctx, c, s);
        continue;
      }
      ctx.beginPath();
      ctx.arc((c.x + 0.5) * s, (c.y + 0.5) * s, 5, 0, 2 * Math.PI);
      ctx.fillStyle = c.label ? "#2ecc40" : "#ff4136";
      ctx.fill();
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    if (state.info.is_3d && (state.z < b.z0 || state.z > b.z1)) return;
    const key = Math.floor((b.z1 - b.z0) / 2 + b.z0);
    ctx.strokeStyle = labelColor(i + 1);
    ctx.lineWidth = i === state.selected ? 3 : 2;
    ctx.setLineDash(state.info.is_3d && state.z !== key ? [6, 4] : []);
    ctx.strokeRect(b.x0 * s, b.y0 * s, (b.x1 - b.x0) * s, (b.y1 - b.y0) * s);
    ctx.setLineDash([]);
    ctx.fillStyle = labelColor(i + 1);
    ctx.font = "bold 13px sans-serif";
    ctx.fillText(String(i + 1), b.x0 * s + 3, b.y0 * s + 14);
  });
  if (state.stroke) drawStroke(ctx, state.stroke, s);
  if (state.drag) {
    const d = state.drag;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 3]);
    ctx.strokeRect(Math.min(d.x, d.x2) * s, Math.min(d.y, d.y2) * s,
      Math.abs(d.x2 - d.x) * s, Math.abs(d.y2 - d.y) * s);
    ctx.setLineDash([]);
  }
}

async function loadSlice() {
  if (!state.info) return;
  const token = ++state.loadToken;
  const base = `/api/sessions/${state.info.session}`;
  try {
    // a slice's pixels never change while the image is open: fetch them once per slice shown
    const sliceKey = `${state.info.session}:${state.z}`;
    const reuse = state.baseKey === sliceKey && state.base;
    const segmented = state.segmentedKey !== null;
    const wantHeat = segmented && state.hasHeat && $("show-uncertainty").checked;
    const [img, mask, heat] = await Promise.all([
      reuse ? state.base : loadImage(`${base}/image/${state.z}.png`),
      segmented ? loadImage(`${base}/mask/${state.z}.png?v=${state.version}`) : null,
      wantHeat ? loadImage(`${base}/uncertainty/${state.z}.png?v=${state.version}`) : null,
    ]);
    if (token !== state.loadToken) return;
    state.base = img;
    state.baseKey = sliceKey;
    state.mask = mask;
    state.heat = heat;
    $("slice-label").textContent = `slice ${state.z + 1} / ${state.info.depth}`;
    draw();
  } catch (err) {
    setStatus(err.message, true);
  }
}

function setSlice(z) {
  if (!state.info) return;
  const clamped = Math.max(0, Math.min(state.info.depth - 1, z));
  if (clamped === state.z && state.base) return;
  state.z = clamped;
  $("slice").value = String(clamped);
  loadSlice();
}

// ----- boxes ---------------------------------------------------------------------------
function renderBoxList() {
  const list = $("box-list");
  list.innerHTML = "";
  state.boxes.forEach((b, i) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = labelColor(i + 1);
    const name = document.createElement("input");
    name.className = "name";
    name.value = b.name || `object ${i + 1}`;
    name.setAttribute("aria-label", `name of object ${i + 1}`);
    name.addEventListener("change", () => {
      record({ kind: "rename", index: i, before: b.name || "", after: name.value });
      b.name = name.value;
    });
    const del = document.createElement("button");
    del.className = "delete";
    del.textContent = "×";
    del.title = `delete object ${i + 1}`;
    del.addEventListener("click", (e) => { e.stopPropagation(); deleteObject(i); });
    li.append(sw, name, del, ` x ${b.x0}–${b.x1}, y ${b.y0}–${b.y1}`);
    const clicks = b.clicks.filter((c) => !c.stroke);
    const strokes = b.clicks.filter((c) => c.stroke);
    if (clicks.length) {
      const pos = clicks.filter((c) => c.label).length;
      li.append(` · clicks +${pos} −${clicks.length - pos}`);
    }
    if (strokes.length) {
      const pos = strokes.filter((c) => c.label).length;
      li.append(` · scribbles +${pos} −${strokes.length - pos}`);
    }
    li.classList.toggle("selected", i === state.selected);
    li.addEventListener("click", (e) => {
      if (e.target instanceof HTMLInputElement) return;
      state.selected = i;
      renderBoxList();
    });
    if (state.info.is_3d) {
      const z = document.createElement("div");
      z.className = "z";
      const mk = (field) => {
        const input = document.createElement("input");
        input.type = "number";
        input.min = "1";
        input.max = String(state.info.depth);
        input.value = String(b[field] + 1);
        input.setAttribute("aria-label", `box ${i + 1} ${field === "z0" ? "first" : "last"} slice`);
        input.addEventListener("change", () => {
          const v = Math.max(1, Math.min(state.info.depth, Math.round(Number(input.value)))) - 1;
          b[field] = v;
          if (b.z0 > b.z1) [b.z0, b.z1] = [b.z1, b.z0];
          renderBoxList();
          boxesChanged();
        });
        return input;
      };
      const ends = document.createElement("button");
      ends.className = "ends";
      ends.textContent = "to the ends";
      ends.title = "propagate over every slice, each way until the mask vanishes";
      ends.setAttribute("aria-label", `box ${i + 1}: propagate until the mask vanishes`);
      ends.addEventListener("click", (e) => {
        e.stopPropagation();
        b.z0 = 0;
        b.z1 = state.info.depth - 1;
        renderBoxList();
        boxesChanged();
      });
      z.append("slices", mk("z0"), "to", mk("z1"), ends);
      li.append(z);
    }
    list.append(li);
  });
  const has = state.boxes.length > 0;
  $("undo").disabled = state.history.length === 0;
  $("redo").disabled = state.redo.length === 0;
  $("clear").disabled = !has && state.segmentedKey === null;
  $("segment").disabled = !state.info || state.busy;
  if (state.info) updateDownloads();
  draw();
}

function boxesChanged() {
  if ($("auto").checked || (state.segmentedKey !== null && state.boxes.length === 0)) {
    segment();
  } else if (state.segmentedKey !== null && !maskIsCurrent()) {
    setStatus("Boxes changed: press Segment to update the mask (downloads wait for it).");
  }
}

// A download is only ever the mask of the prompts on screen: while the prompts differ from those
// of the last segmentation (a change not segmented yet, or a request in flight), the links are
// disabled and the page is marked stale (``data-stale``).
function updateDownloads() {
  const current = maskIsCurrent() && !state.busy;
  const stale = state.segmentedKey !== null && !current;
  document.body.dataset.stale = stale ? "1" : "0";
  $("stale-note").hidden = !stale;
  for (const fmt of ["nifti", "png", "npz", "dicom-seg"]) {
    const a = $(`dl-${fmt}`);
    const ok = current && state.objectCount > 0 && state.info.formats.includes(fmt);
    a.classList.toggle("disabled", !ok);
    a.setAttribute("aria-disabled", ok ? "false" : "true");
    if (ok) a.href = `/api/sessions/${state.info.session}/download/${fmt}?v=${state.version}`;
    else a.removeAttribute("href");
  }
}

function toImage(event) {
  const rect = $("canvas").getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * state.info.width;
  const y = ((event.clientY - rect.top) / rect.height) * state.info.height;
  return {
    x: Math.max(0, Math.min(state.info.width, x)),
    y: Math.max(0, Math.min(state.info.height, y)),
  };
}

function addClick(event) {
  const index = state.selected;
  if (index < 0 || index >= state.boxes.length) {
    setStatus("Draw a box first (press B for the box tool), then click to correct its mask.", true);
    return;
  }
  const p = toImage(event);
  const x = Math.min(state.info.width - 1, Math.floor(p.x));
  const y = Math.min(state.info.height - 1, Math.floor(p.y));
  const label = event.shiftKey || event.button === 2 ? 0 : 1;
  state.boxes[index].clicks.push({ x, y, z: state.info.is_3d ? state.z : 0, label });
  record({ kind: "click", index });
  renderBoxList();
  segment();
}

// A thin-structure stroke with no object selected starts an object of its own, boxed by the
// whole image (every slice of a volume): the vessel tree it lies on is traced wherever it runs.
function startsThinObject(event) {
  const none = state.selected < 0 || state.selected >= state.boxes.length;
  return state.tool === "scribble" && $("thin").checked && none &&
    event.button === 0 && !event.shiftKey;
}

function onPointerDown(event) {
  if (!state.info) return;
  const noObject = state.boxes.length === 0 && event.button === 0;
  if (noObject && state.tool !== "box" && !startsThinObject(event)) {
    setTool("box");  // nothing to correct yet: the drag draws the first box
    setStatus("No object yet, so the box tool (B) is on: drag a box around the structure.");
  }
  if (state.tool === "scribble" && (event.button === 0 || event.button === 2)) {
    const thinStart = startsThinObject(event);
    if (!thinStart && (state.selected < 0 || state.selected >= state.boxes.length)) {
      setStatus("Draw a box first (press B for the box tool), then scribble to correct its mask.", true);
      return;
    }
    const p = toImage(event);
    const label = event.shiftKey || event.button === 2 ? 0 : 1;
    state.stroke = {
      stroke: [[Math.floor(p.x), Math.floor(p.y)]],
      label,
      radius: Number($("brush").value),
      z: state.info.is_3d ? state.z : 0,
    };
    if (label === 1 && $("thin").checked) state.stroke.thin = true;
    if (thinStart) state.stroke.newObject = true;
    $("canvas").setPointerCapture(event.pointerId);
    event.preventDefault();
    draw();
    return;
  }
  if (state.tool === "click") {
    if (event.button === 0 || event.button === 2) addClick(event);
    event.preventDefault();
    return;
  }
  if (event.button !== 0) return;
  const p = toImage(event);
  state.drag = { x: p.x, y: p.y, x2: p.x, y2: p.y };
  $("canvas").setPointerCapture(event.pointerId);
  event.preventDefault();
}

function onPointerMove(event) {
  if (state.stroke) {
    const p = toImage(event);
    const x = Math.min(state.info.width - 1, Math.floor(p.x));
    const y = Math.min(state.info.height - 1, Math.floor(p.y));
    const last = state.stroke.stroke[state.stroke.stroke.length - 1];
    if (last[0] !== x || last[1] !== y) state.stroke.stroke.push([x, y]);
    draw();
    return;
  }
  if (!state.drag) return;
  const p = toImage(event);
  state.drag.x2 = p.x;
  state.drag.y2 = p.y;
  draw();
}

function onPointerUp(event) {
  if (state.stroke) {
    const { newObject, ...stroke } = state.stroke;
    state.stroke = null;
    if (newObject) {  // one undo step takes the object and its stroke away together
      const w = state.info.width, h = state.info.height;
      const z1 = state.info.is_3d ? state.info.depth - 1 : 0;
      state.boxes.push({ x0: 0, y0: 0, x1: w, y1: h, z0: 0, z1, clicks: [stroke] });
      state.selected = state.boxes.length - 1;
      record({ kind: "box" });
      const where = state.info.is_3d ? "the whole volume" : "the whole image";
      setStatus(`Object ${state.boxes.length}: the thin structure under the stroke, in ${where}.`);
    } else {
      state.boxes[state.selected].clicks.push(stroke);
      record({ kind: "click", index: state.selected });
    }
    renderBoxList();
    segment();
    return;
  }
  if (!state.drag) return;
  const d = state.drag;
  state.drag = null;
  const p = toImage(event);
  d.x2 = p.x;
  d.y2 = p.y;
  const x0 = Math.floor(Math.min(d.x, d.x2));
  const x1 = Math.ceil(Math.max(d.x, d.x2));
  const y0 = Math.floor(Math.min(d.y, d.y2));
  const y1 = Math.ceil(Math.max(d.y, d.y2));
  if (x1 - x0 < 2 || y1 - y0 < 2) {
    setStatus("Box too small: drag across the structure.");
    draw();
    return;
  }
  const box = { x0, y0, x1, y1, z0: 0, z1: 0, clicks: [] };
  if (state.info.is_3d) {
    const r = Math.max(2, Math.round(state.info.depth * 0.1));
    box.z0 = Math.max(0, state.z - r);
    box.z1 = Math.min(state.info.depth - 1, state.z + r);
  }
  state.boxes.push(box);
  state.selected = state.boxes.length - 1;
  record({ kind: "box" });
  setStatus(state.info.is_3d
    ? `Box ${state.boxes.length} on slices ${box.z0 + 1}–${box.z1 + 1}: adjust the range in the list (or "to the ends": until the mask vanishes), then press Segment.`
    : `Box ${state.boxes.length} added.`);
  renderBoxList();
  boxesChanged();
}

// ----- server calls --------------------------------------------------------------------
async function segment() {
  if (!state.info) return;
  if (state.busy) {
    state.pending = true;
    return;
  }
  state.busy = true;
  $("segment").disabled = true;
  updateDownloads();
  const boxes = boxArrays();
  const clicks = clickArrays();
  const key = promptKey();
  setStatus(boxes.length ? "Segmenting… (the first run loads the model)" : "Clearing…");
  try {
    const result = await api(`/api/sessions/${state.info.session}/segment`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        boxes,
        ...(clicks.some((c) => c.length) ? { clicks } : {}),
        overwrite: $("overwrite").checked,
        names: state.boxes.map((b) => b.name || ""),
      }),
    });
    state.version = result.version;
    state.segmentedKey = boxes.length ? key : null;
    state.hasHeat = Boolean(result.uncertainty);
    renderResult(result);
    await loadSlice();
    document.body.dataset.version = String(result.version);
    setStatus(boxes.length ? `Done in ${result.seconds.toFixed(2)} s.` : "Cleared.");
    if (result.autosave_error) setStatus(result.autosave_error, true);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    state.busy = false;
    renderBoxList();
    if (state.pending) {
      state.pending = false;
      if (!maskIsCurrent()) segment();
    }
  }
}

function renderResult(result) {
  const out = $("result");
  out.innerHTML = "";
  const ready = result.objects.length > 0;
  state.objectCount = result.objects.length;
  $("dl-dicom-seg").hidden = !state.info.formats.includes("dicom-seg");
  updateDownloads();
  if (!ready) return;
  const unit = state.info.is_3d ? "mL" : "mm²";
  // plain pictures (and 2D challenge cases) record no pixel size: show no physical size then
  const physical = state.info.is_3d || ["nifti", "nrrd", "dicom"].includes(state.info.source_format);
  const table = document.createElement("table");
  const conf = result.objects.some((o) => o.confidence !== null && o.confidence !== undefined);
  const ref = result.objects.some((o) => o.dsc !== undefined);
  table.innerHTML = `<tr><th>#</th><th>IoU est.</th>${conf ? "<th>confidence</th>" : ""}` +
    `<th>${state.info.is_3d ? "voxels" : "pixels"}</th>${physical ? `<th>${unit}</th>` : ""}` +
    `${ref ? "<th>DSC</th>" : ""}</tr>`;
  for (const o of result.objects) {
    const size = state.info.is_3d ? (o.size_mm / 1000).toFixed(2) : o.size_mm.toFixed(0);
    const tr = document.createElement("tr");
    tr.innerHTML = `<td><span class="swatch" style="display:inline-block;width:10px;height:10px;background:${labelColor(o.label)}"></span> ${o.label}</td>` +
      `<td>${o.iou === null ? "–" : o.iou.toFixed(3)}</td>` +
      (conf ? `<td>${o.confidence === null ? "–" : o.confidence.toFixed(3)}</td>` : "") +
      `<td>${o.voxels}</td>${physical ? `<td>${size}</td>` : ""}` +
      (ref ? `<td>${o.dsc.toFixed(3)}</td>` : "");
    table.append(tr);
  }
  out.append(table);
  state.review = [];
  for (const o of result.objects) {
    if (o.slice_iou) {
      const strip = document.createElement("canvas");
      strip.className = "strip";
      strip.width = Math.max(60, Math.min(240, o.slice_iou.length * 4));
      strip.height = 10;
      strip.title = `object ${o.label}: IoU estimate per slice (red low, green high); click a slice`;
      const ctx = strip.getContext("2d");
      const step = strip.width / o.slice_iou.length;
      o.slice_iou.forEach((v, z) => {
        ctx.fillStyle = v === null ? "#333" : `hsl(${Math.round(120 * Math.max(0, Math.min(1, v)))}, 80%, 45%)`;
        ctx.fillRect(Math.floor(z * step), 0, Math.ceil(step), 10);
        if (v !== null) state.review.push({ label: o.label, z, score: v });
      });
      strip.addEventListener("click", (e) => {
        const rect = strip.getBoundingClientRect();
        setSlice(Math.floor(((e.clientX - rect.left) / rect.width) * o.slice_iou.length));
      });
      const row = document.createElement("div");
      row.className = "strip-row";
      row.append(`${o.label} `, strip);
      out.append(row);
    } else {
      // no estimate (a traced thin structure): checked first
      const score = o.confidence !== null && o.confidence !== undefined ? o.confidence : (o.iou ?? 0);
      state.review.push({ label: o.label, z: null, score });
    }
  }
  state.review.sort((a, b) => a.score - b.score);
  $("next-check").disabled = state.review.length === 0;
  if (result.dsc !== undefined) {
    const p = document.createElement("div");
    p.className = "dsc";
    p.id = "dsc";
    p.title = "each object against the reference label its mask overlaps most; mean over objects";
    p.textContent = `DSC vs. reference mask: ${result.dsc.toFixed(3)}`;
    out.append(p);
  }
}

function nextToCheck() {
  const next = state.review.find((r) => !state.reviewed.has(`${r.label}:${r.z}`));
  if (!next) {
    setStatus("Every object (and slice) has been checked.");
    return;
  }
  state.reviewed.add(`${next.label}:${next.z}`);
  state.selected = next.label - 1;
  renderBoxList();
  if (next.z !== null) setSlice(next.z);
  const where = next.z !== null ? `, slice ${next.z + 1}` : "";
  setStatus(`Check object ${next.label}${where}: estimate ${next.score.toFixed(2)}.`);
  document.body.dataset.checked = `${next.label}:${next.z}`;
}

function openSession(info) {
  state.info = info;
  state.boxes = [];
  state.selected = -1;
  state.history = [];
  state.redo = [];
  state.review = [];
  state.reviewed = new Set();
  state.segmentedKey = null;
  state.objectCount = 0;
  state.version = 0;
  state.base = null;
  state.baseKey = null;
  state.mask = null;
  state.heat = null;
  state.hasHeat = false;
  $("uncertainty-row").hidden = !info.uncertainty;
  setTool("box");  // a new image starts with a box, whatever tool the last one ended with
  document.body.dataset.version = "0";
  document.body.dataset.session = info.session;
  document.body.dataset.encoded = "0";
  pollEncoding(info.session);
  $("image-name").textContent =
    `${info.name} (${info.is_3d ? `${info.depth} × ` : ""}${info.height} × ${info.width}` +
    `${info.modality ? `, ${info.modality}` : ""}, ${info.source_format})`;
  $("slice-bar").hidden = !info.is_3d;
  $("slice").max = String(info.depth - 1);
  $("auto").checked = !info.is_3d;
  $("use-stored").hidden = !info.stored_boxes;
  $("restore").hidden = !info.saved;
  if (info.saved) {
    $("restore").textContent =
      `Restore the ${info.saved.objects} object(s) saved ${info.saved.saved}`;
  }
  $("draw-hint").textContent = info.is_3d
    ? "Scroll to a slice, drag a box; set its slice range in the list. Propagation starts at the middle slice of the range."
    : "Drag on the image to draw a box; draw more boxes for more structures.";
  renderResult({ objects: [], version: 0 });
  renderBoxList();
  layout();
  state.z = -1;
  setSlice(info.is_3d ? Math.floor(info.depth / 2) : 0);
  setStatus(`Opened ${info.name}.`);
}

// The server encodes the image (2D) or every slice (3D) as soon as it is opened. Each status
// request waits on the server until more slices are ready (?after=N), so progress shows at once.
async function pollEncoding(sid) {
  const bar = $("embed-progress");
  let seen = -1;
  while (state.info && state.info.session === sid) {
    let st;
    try {
      st = await api(`/api/sessions/${sid}/status?after=${Math.max(seen, 0)}`);
    } catch (err) {
      return;
    }
    if (st.error) {
      bar.textContent = `not encoded ahead (${st.error})`;
      $("embed-label").textContent = `not encoded ahead: ${st.error}`;
      document.body.dataset.encoded = "error";
      return;
    }
    bar.value = st.embedded / st.total;
    bar.textContent = `${st.embedded} / ${st.total}`;
    const took = st.seconds == null ? "" : ` in ${st.seconds.toFixed(1)} s`;
    const by = st.model ? ` (${st.model} encoder)` : "";
    $("embed-label").textContent = st.ready
      ? `ready${took}${by}: prompts only run the mask decoder`
      : `encoding ${state.info.is_3d ? `slices ${st.embedded} / ${st.total}` : "the image"}…` +
        " you can draw boxes and segment meanwhile (slices not encoded yet are encoded on demand)";
    if (st.ready) {
      document.body.dataset.encoded = "1";
      return;
    }
    if (st.embedded === seen) {  // the server waited without news: do not ask again at once
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    seen = st.embedded;
  }
}

async function importMask(file) {
  if (!state.info) return;
  setStatus(`Importing ${file.name}…`);
  try {
    const params = new URLSearchParams({ name: file.name });
    const result = await api(`/api/sessions/${state.info.session}/import?${params}`, {
      method: "POST", body: file,
    });
    for (const b of result.boxes) {
      state.boxes.push(state.info.is_3d
        ? { x0: b[0], y0: b[1], z0: b[2], x1: b[3], y1: b[4], z1: b[5], clicks: [], name: "" }
        : { x0: b[0], y0: b[1], x1: b[2], y1: b[3], z0: 0, z1: 0, clicks: [], name: "" });
      record({ kind: "box" });
    }
    state.selected = state.boxes.length - 1;
    renderBoxList();
    await segment();
    setStatus(`Imported ${result.labels.length} object(s): correct them with clicks or scribbles.`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function restoreSaved() {
  if (!state.info) return;
  try {
    const work = await api(`/api/sessions/${state.info.session}/saved`);
    state.boxes = work.objects.map((o) => {
      const b = o.box;
      const clicks = o.clicks.map((c) => {
        if (!Array.isArray(c)) {  // a scribble stroke, as the page sent it
          return { stroke: c.stroke, label: c.label, radius: c.radius, z: c.z ?? 0, thin: c.thin === true };
        }
        return state.info.is_3d
          ? { x: c[0], y: c[1], z: c[2], label: c[3] }
          : { x: c[0], y: c[1], z: 0, label: c[2] };
      });
      const name = o.name || "";
      return state.info.is_3d
        ? { x0: b[0], y0: b[1], z0: b[2], x1: b[3], y1: b[4], z1: b[5], clicks, name }
        : { x0: b[0], y0: b[1], x1: b[2], y1: b[3], z0: 0, z1: 0, clicks, name };
    });
    state.history = state.boxes.map(() => ({ kind: "box" }));
    state.selected = state.boxes.length - 1;
    $("overwrite").checked = Boolean(work.overwrite);
    $("restore").hidden = true;
    renderBoxList();
    segment();
  } catch (err) {
    setStatus(err.message, true);
  }
}

function useStoredBoxes() {
  if (!state.info || !state.info.stored_boxes) return;
  state.boxes = state.info.stored_boxes.map((b) => state.info.is_3d
    ? { x0: b[0], y0: b[1], z0: b[2], x1: b[3], y1: b[4], z1: b[5], clicks: [] }
    : { x0: b[0], y0: b[1], x1: b[2], y1: b[3], z0: 0, z1: 0, clicks: [] });
  state.selected = state.boxes.length - 1;
  state.history = state.boxes.map(() => ({ kind: "box" }));
  if (state.info.is_3d && state.boxes.length) {
    const b = state.boxes[0];
    setSlice(Math.floor((b.z1 - b.z0) / 2 + b.z0));
  }
  renderBoxList();
  segment();
}

async function openExample(name) {
  setStatus(`Opening ${name}…`);
  try {
    openSession(await api(`/api/examples/${encodeURIComponent(name)}`, { method: "POST" }));
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function uploadFile(file) {
  if (state.maxMb && file.size > state.maxMb * 1048576) {
    setStatus(`${file.name} is larger than the ${state.maxMb} MiB upload limit.`, true);
    return;
  }
  setStatus(`Uploading ${file.name}…`);
  const params = new URLSearchParams({ name: file.name });
  if ($("window").value) params.set("window", $("window").value);
  try {
    openSession(await api(`/api/upload?${params}`, { method: "POST", body: file }));
  } catch (err) {
    setStatus(err.message, true);
  }
}

function applyModel(name, prompts, correctionsBy) {
  state.clicksAllowed = prompts.includes("click");
  $("tools").hidden = !state.clicksAllowed;
  if (!state.clicksAllowed) setTool("box");
  // the default model takes boxes; its clicks and scribbles go to the interactive model
  const note = $("corrections-by");
  note.hidden = !correctionsBy;
  note.textContent = correctionsBy ? `clicks and scribbles: ${correctionsBy}` : "";
  document.body.dataset.model = name;
}

async function chooseModel(name) {
  setStatus(`Switching to ${name}…`);
  try {
    const result = await api("/api/model", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: name }),
    });
    applyModel(result.model, result.prompts, result.corrections_by);
    if (state.info) {
      if (!state.clicksAllowed) state.boxes.forEach((b) => { b.clicks = []; });
      document.body.dataset.encoded = "0";
      pollEncoding(state.info.session);
      renderBoxList();
      if (state.boxes.length) await segment();
    }
    setStatus(`Model: ${name}.`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function init() {
  const canvas = $("canvas");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("wheel", (e) => {
    if (!state.info || !state.info.is_3d) return;
    e.preventDefault();
    setSlice(state.z + (e.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  $("slice").addEventListener("input", () => setSlice(Number($("slice").value)));
  $("slice-down").addEventListener("click", () => setSlice(state.z - 1));
  $("slice-up").addEventListener("click", () => setSlice(state.z + 1));
  $("segment").addEventListener("click", () => segment());
  canvas.addEventListener("contextmenu", (e) => { if (state.tool !== "box") e.preventDefault(); });
  $("brush").addEventListener("input", () => { $("brush-size").textContent = $("brush").value; });
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", () => {
    state.boxes = []; state.history = []; state.selected = -1; renderBoxList(); boxesChanged();
  });
  $("tool-box").addEventListener("change", () => setTool("box"));
  $("model").addEventListener("change", () => chooseModel($("model").value));
  $("tool-click").addEventListener("change", () => setTool("click"));
  $("tool-scribble").addEventListener("change", () => setTool("scribble"));
  $("use-stored").addEventListener("click", useStoredBoxes);
  $("restore").addEventListener("click", restoreSaved);
  $("import").addEventListener("change", () => {
    const file = $("import").files[0];
    if (file) importMask(file);
    $("import").value = "";
  });
  $("next-check").addEventListener("click", nextToCheck);
  $("show-mask").addEventListener("change", draw);
  $("overwrite").addEventListener("change", () => { if (state.boxes.length) segment(); });
  $("show-uncertainty").addEventListener("change", () => loadSlice());
  $("opacity").addEventListener("input", draw);
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) uploadFile(file);
    $("file").value = "";
  });
  window.addEventListener("resize", layout);
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if ((e.ctrlKey || e.metaKey) && (e.key === "y" || (e.key === "z" && e.shiftKey) || e.key === "Z")) {
      redo(); e.preventDefault();
    } else if ((e.ctrlKey || e.metaKey) && e.key === "z") {
      undo(); e.preventDefault();
    } else if (e.key === "Delete" && state.selected >= 0) {
      deleteObject(state.selected);
    } else if (e.key === "b") { setTool("box"); }
    else if (e.key === "c") { setTool("click"); }
    else if (e.key === "s") { setTool("scribble"); }
    else if (e.key === "t") { $("thin").checked = !$("thin").checked; setTool("scribble"); }
    else if (e.key === "n") { nextToCheck(); }
    else if (e.key === "[" || e.key === "]") {
      const brush = $("brush");
      brush.value = String(Number(brush.value) + (e.key === "]" ? 1 : -1));
      $("brush-size").textContent = brush.value;
    }
    else if (e.key === "ArrowUp" || e.key === "PageUp") { setSlice(state.z + 1); e.preventDefault(); }
    else if (e.key === "ArrowDown" || e.key === "PageDown") { setSlice(state.z - 1); e.preventDefault(); }
  });
  try {
    const config = await api("/api/config");
    state.maxMb = config.max_upload_mb;
    applyModel(config.model, config.prompts || [], config.corrections_by);
    const select = $("model");
    for (const m of config.models || []) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.description;
      option.selected = m.name === config.model;
      select.append(option);
    }
    $("max-mb").textContent = String(config.max_upload_mb);
    const box = $("examples");
    for (const name of config.examples) {
      const b = document.createElement("button");
      b.textContent = name;
      b.title = name;
      b.dataset.example = name;
      b.addEventListener("click", () => openExample(name));
      box.append(b);
    }
    if (!config.examples.length) box.textContent = "none installed";
    setStatus("Open an example or a file.");
    document.body.dataset.ready = "1";
  } catch (err) {
    setStatus(err.message, true);
  }
}

init();
