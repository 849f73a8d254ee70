// The cyclekit page: a client of the same POST /api/translate that scripts use.
// No external resources, no analytics; the photo goes to this server only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, source: null, sourceName: "image", resultUrl: null, beforeUrl: null, stream: null };

function fmtBytes(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
const fmtMP = (n) => (n >= 100000 ? `${(n / 1e6).toFixed(1)} megapixels` : `${n} pixels`);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}
function setStatus(message) { $("status").textContent = message || ""; }

function radio(groupName, value, label, checked, disabled, title) {
  const wrap = document.createElement("label");
  wrap.className = "choice";
  const input = document.createElement("input");
  Object.assign(input, { type: "radio", name: groupName, value, checked, disabled });
  input.id = `${groupName}-${value}`;
  const span = document.createElement("span");
  span.textContent = label;
  if (title) wrap.title = title;
  wrap.append(input, span);
  return wrap;
}
const chosen = (name) => (document.querySelector(`input[name="${name}"]:checked`) || {}).value;

function currentModel() {
  return state.info.models.find((m) => m.name === $("model").value) || state.info.models[0];
}

function renderDirections() {
  const box = $("directions");
  const dirs = currentModel().directions;
  const prev = chosen("direction");
  const keep = dirs.some((d) => d.id === prev) ? prev : dirs[0].id;
  box.replaceChildren(...dirs.map((d) => radio("direction", d.id, d.label, d.id === keep)));
  const m = currentModel();
  $("model-info").textContent = `${m.generator} generator, trained at ${m.image_size} px, ${m.channels === 1 ? "grayscale" : "colour"}`;
}

function renderModes() {
  // a model trained on face crops starts in face swap mode (when the server can swap faces)
  const box = $("modes");
  const face = state.info.modes.find((m) => m.id === "face");
  const start = currentModel().face && face && face.available ? "face" : "image";
  box.replaceChildren(...state.info.modes.map((m) =>
    radio("mode", m.id, m.label, m.id === start, !m.available, m.available ? "" : m.reason)));
  const showAllFaces = () => {
    $("all-faces-wrap").hidden = $("strength-wrap").hidden = chosen("mode") !== "face";
  };
  box.querySelectorAll("input").forEach((i) => i.addEventListener("change", showAllFaces));
  showAllFaces();
  $("mode-note").textContent = face && !face.available ? `Face swap is unavailable: ${face.reason}` : "";
}

async function loadInfo() {
  try {
    const r = await fetch("/api/info");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    state.info = await r.json();
  } catch (e) {
    showError(`Could not reach the server (${e.message}). Is \`cyclekit serve\` still running?`);
    return;
  }
  const select = $("model");
  select.replaceChildren(...state.info.models.map((m) => new Option(m.name, m.name, false, m.name === state.info.default_model)));
  select.disabled = state.info.models.length < 2;
  renderDirections();
  renderModes();
  const L = state.info.limits;
  $("limits").textContent = `Accepted: ${state.info.formats.join(", ")} up to ${fmtBytes(L.max_upload_bytes)} ` +
    `and ${fmtMP(L.max_pixels)}. Results are lossless PNG.`;
}

// ------------------------------------------------------------------ the source image
function clearResult() {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = null;
  $("after-img").hidden = true;
  $("after-img").removeAttribute("src");
  delete $("after-img").dataset.direction;
  $("after-placeholder").hidden = false;
  $("after-placeholder").textContent = "The result appears here.";
  $("after-meta").textContent = "";
  $("download").hidden = true;
}

function loadImg(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot preview"));
    img.src = url;
  });
}

function canvasToPng(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function setSource(blob, name) {
  showError("");
  clearResult();
  state.sourceName = name || "image";
  document.querySelector("#drop .drop-main").textContent = state.sourceName;
  document.querySelector("#drop .drop-sub").textContent = "click to choose another, or drop one here";
  const L = state.info ? state.info.limits : null;
  if (L && blob.size > L.max_upload_bytes) {
    state.source = null;
    $("translate").disabled = true;
    showError(`This file is ${fmtBytes(blob.size)}; the server accepts at most ${fmtBytes(L.max_upload_bytes)}. ` +
      "Choose a smaller file.");
    return;
  }
  if (state.beforeUrl) URL.revokeObjectURL(state.beforeUrl);
  state.beforeUrl = URL.createObjectURL(blob);
  state.source = blob;
  const before = $("before-img");
  let note = "";
  try {
    const img = await loadImg(state.beforeUrl);
    let w = img.naturalWidth, h = img.naturalHeight;
    if (L && (w * h > L.max_pixels || Math.max(w, h) > L.max_side)) {
      // Too many pixels for the server: shrink here (lossless PNG) rather than fail there.
      const s = Math.min(Math.sqrt(L.max_pixels / (w * h)), L.max_side / Math.max(w, h));
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.floor(w * s));
      canvas.height = Math.max(1, Math.floor(h * s));
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      state.source = await canvasToPng(canvas);
      URL.revokeObjectURL(state.beforeUrl);
      state.beforeUrl = URL.createObjectURL(state.source);
      note = ` · resized from ${w}×${h} to fit the server's limit`;
      w = canvas.width; h = canvas.height;
    }
    before.src = state.beforeUrl;
    before.classList.toggle("pixelated", Math.max(w, h) < 256);
    before.hidden = false;
    $("before-placeholder").hidden = true;
    $("before-meta").textContent = `${w}×${h}${note}`;
  } catch (e) {
    // The browser cannot show it (TIFF, or not an image): the server decides.
    before.hidden = true;
    $("before-placeholder").hidden = false;
    $("before-placeholder").textContent = `No preview for ${state.sourceName}; the server will check it when you translate.`;
    $("before-meta").textContent = fmtBytes(blob.size);
  }
  $("translate").disabled = false;
  setStatus(`Ready: ${state.sourceName}. Press Translate.`);
}

// ------------------------------------------------------------------ translating
async function translate() {
  if (!state.source) return;
  showError("");
  const btn = $("translate");
  btn.disabled = true;
  const model = $("model").value, mode = chosen("mode") || "image", direction = chosen("direction") || "AtoB";
  const t0 = performance.now();
  const tick = setInterval(() => setStatus(`Translating… ${((performance.now() - t0) / 1000).toFixed(1)} s`), 200);
  setStatus("Translating…");
  $("after-img").classList.add("stale");
  try {
    const params = new URLSearchParams({ model, mode, direction, filename: state.sourceName });
    if (mode === "face" && $("all-faces").checked) params.set("all_faces", "1");
    if (mode === "face" && $("strength").value.trim()) params.set("strength", $("strength").value.trim());
    const r = await fetch(`/api/translate?${params}`, {
      method: "POST", body: state.source,
      headers: { "Content-Type": state.source.type || "application/octet-stream" },
    });
    if (!r.ok) {
      let msg = `The server answered ${r.status}.`;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      if (r.status === 503) msg += ` (retry in about ${r.headers.get("Retry-After") || "a few"} s)`;
      throw new Error(msg.charAt(0).toUpperCase() + msg.slice(1));
    }
    const blob = await r.blob();
    clearResult();
    state.resultUrl = URL.createObjectURL(blob);
    const after = $("after-img");
    after.src = state.resultUrl;
    after.dataset.direction = direction;
    after.dataset.mode = mode;
    await after.decode().catch(() => {});
    after.classList.toggle("pixelated", Math.max(after.naturalWidth, after.naturalHeight) < 256);
    after.hidden = false;
    $("after-placeholder").hidden = true;
    const faces = r.headers.get("X-Cyclekit-Faces");
    const dirLabel = (currentModel().directions.find((d) => d.id === direction) || {}).label || direction;
    $("after-meta").textContent = `${after.naturalWidth}×${after.naturalHeight} · ${dirLabel}` +
      (mode === "face" ? ` · ${faces !== null ? faces : "?"} face(s)` : "") +
      (mode === "face" && r.headers.get("X-Cyclekit-Strength") ? ` · strength ${r.headers.get("X-Cyclekit-Strength")}` : "");
    const stem = state.sourceName.replace(/\.[^.]+$/, "").replace(/[^\w.-]+/g, "_") || "image";
    const link = $("download");
    link.href = state.resultUrl;
    link.download = `${stem}_${model}_${direction}.png`;
    link.hidden = false;
    const secs = ((performance.now() - t0) / 1000).toFixed(2);
    const said = r.headers.get("X-Cyclekit-Message");
    setStatus(`Done in ${secs} s (${r.headers.get("X-Cyclekit-Ms") || "?"} ms on the server)` + (said ? `: ${said}.` : "."));
  } catch (e) {
    setStatus("");
    const msg = e instanceof TypeError
      ? "Could not reach the server, or it closed the connection (was the file too large?). Is `cyclekit serve` still running?"
      : e.message;
    showError(msg);
  } finally {
    clearInterval(tick);
    $("after-img").classList.remove("stale");
    btn.disabled = !state.source;
  }
}

// ------------------------------------------------------------------ webcam
async function openCamera() {
  showError("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("The webcam needs a secure page: open this page at http://127.0.0.1 or localhost on this machine, or serve it over https.");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    showError(`The webcam could not be opened (${e.name || e.message}). Allow camera access for this page and try again.`);
    return;
  }
  $("video").srcObject = state.stream;
  $("camera").hidden = false;
  $("webcam-btn").hidden = true;
}

function closeCamera() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("video").srcObject = null;
  $("camera").hidden = true;
  $("webcam-btn").hidden = false;
}

async function snapshot() {
  const video = $("video");
  if (!video.videoWidth) { showError("The camera is not ready yet; try again in a moment."); return; }
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const blob = await canvasToPng(canvas);
  closeCamera();
  await setSource(blob, "webcam.png");
}

// ------------------------------------------------------------------ wiring
function init() {
  $("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) setSource(f, f.name); });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer.files[0];
    if (f) setSource(f, f.name);
  });
  $("model").addEventListener("change", () => { renderDirections(); renderModes(); clearResult(); });
  $("translate").addEventListener("click", translate);
  $("webcam-btn").addEventListener("click", openCamera);
  $("cam-close").addEventListener("click", closeCamera);
  $("snap").addEventListener("click", snapshot);
  loadInfo();
}
document.addEventListener("DOMContentLoaded", init);
