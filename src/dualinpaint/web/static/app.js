// dualinpaint page: open a photo, paint a mask, send both to POST api/inpaint, compare and download.
//
// The mask lives in image coordinates: every stroke is stored as points + size in image pixels and is
// drawn on `maskFull` (the photo's full resolution, sent to the server as white = hole on black) and
// on `maskView` (the displayed size, for the overlay). Undo/redo replays the stored actions, so no
// full-resolution snapshots are kept.
"use strict";

(() => {
  const MASK_COLOR = "rgb(255, 48, 96)";
  const OVERLAY_ALPHA = 0.55;
  const MAX_UPSCALE = 4;

  const $ = (id) => document.getElementById(id);
  const el = {
    file: $("file-input"), maskInput: $("mask-input"), maskDownload: $("mask-download"),
    brush: $("brush-btn"), eraser: $("eraser-btn"), size: $("brush-size"), sizeValue: $("brush-size-value"),
    undo: $("undo-btn"), redo: $("redo-btn"), clear: $("clear-btn"),
    dilate: $("dilate"), samples: $("samples"), seed: $("seed"), texture: $("texture"),
    inpaint: $("inpaint-btn"), busy: $("busy"), busyText: $("busy-text"), message: $("message"),
    modelInfo: $("model-info"), imageInfo: $("image-info"), resultInfo: $("result-info"),
    panels: $("panels"), editor: $("editor-panel"), drop: $("drop-zone"), wrap: $("canvas-wrap"),
    canvas: $("canvas"), resultPanel: $("result-panel"), compare: $("compare"),
    before: $("before-img"), result: $("result-img"), slider: $("compare-slider"),
    divider: $("compare-divider"), strip: $("samples-strip"), download: $("download-link"),
    useResult: $("use-result-btn"),
  };
  const view = el.canvas.getContext("2d");

  const state = {
    file: null, name: "image", url: null, photo: null, width: 0, height: 0,
    maskFull: null, maskView: null, photoView: null, cssScale: 1,
    actions: [], undone: [], stroke: null, pointer: null, tool: "brush",
    busy: false, results: [], resultUrls: [], selected: 0,
    limits: { max_upload_bytes: 20 * 1024 * 1024, max_pixels: 40e6, max_samples: 8 },
    textureStrength: 1, // what a ticked Texture box asks for: the server's default when it has one
  };

  // ------------------------------------------------------------------------------------------ messages

  function showMessage(text, kind = "error") {
    el.message.textContent = text;
    el.message.className = `message ${kind}`;
    el.message.hidden = !text;
  }

  async function errorText(resp) {
    let detail = "";
    try {
      const body = await resp.clone().json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
    } catch {
      detail = (await resp.text()).slice(0, 300);
    }
    return `The server refused the request (${resp.status} ${resp.statusText})${detail ? ": " + detail : "."}`;
  }

  function canvasOf(width, height) {
    const c = document.createElement("canvas");
    c.width = width;
    c.height = height;
    return c;
  }

  function baseName(name) {
    return (name || "image").replace(/\.[^.]+$/, "").replace(/_inpainted(_\d+)?$/, "") || "image";
  }

  // ------------------------------------------------------------------------------------- opening images

  async function decode(blob) {
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.src = url;
    try {
      await img.decode(); // EXIF orientation is applied, as the server does
    } catch {
      URL.revokeObjectURL(url);
      throw new Error("This file is not an image the browser can display (try PNG, JPEG or WebP).");
    }
    return { img, url };
  }

  async function openImage(blob, name) {
    if (!blob) return;
    if (blob.type && !blob.type.startsWith("image/")) {
      showMessage(`${name || "This file"} is not an image (${blob.type}).`);
      return;
    }
    let decoded;
    try {
      decoded = await decode(blob);
    } catch (err) {
      showMessage(err.message);
      return;
    }
    const { img, url } = decoded;
    const w = img.naturalWidth, h = img.naturalHeight;
    if (w * h > state.limits.max_pixels) {
      URL.revokeObjectURL(url);
      showMessage(`The photo is ${w}×${h} = ${(w * h / 1e6).toFixed(1)} MP; the server accepts at most ` +
        `${state.limits.max_pixels / 1e6} MP.`);
      return;
    }
    if (state.url) URL.revokeObjectURL(state.url);
    Object.assign(state, { file: blob, name: name || "image.png", url, photo: img, width: w, height: h });
    state.maskFull = canvasOf(w, h);
    state.actions = [];
    state.undone = [];
    el.drop.hidden = true;
    el.wrap.hidden = false;
    el.imageInfo.textContent = `${name || "image"} · ${w}×${h}`;
    hideResults();
    showMessage("");
    layout();
    updateButtons();
  }

  // --------------------------------------------------------------------------------------------- layout

  function layout() {
    if (!state.photo) return;
    const pad = getComputedStyle(el.editor);
    const availW = el.editor.clientWidth - parseFloat(pad.paddingLeft) - parseFloat(pad.paddingRight);
    const top = el.wrap.getBoundingClientRect().top + window.scrollY;
    const availH = Math.max(240, window.innerHeight - top - 24);
    const fit = Math.min(availW / state.width, availH / state.height, MAX_UPSCALE);
    const cssW = Math.max(1, Math.floor(state.width * fit));
    const cssH = Math.max(1, Math.floor(state.height * fit));
    const dpr = window.devicePixelRatio || 1;
    state.cssScale = cssW / state.width;
    el.canvas.style.width = `${cssW}px`;
    el.canvas.style.height = `${cssH}px`;
    el.canvas.width = Math.round(cssW * dpr);
    el.canvas.height = Math.round(cssH * dpr);
    el.compare.style.width = `${cssW}px`;
    state.photoView = canvasOf(el.canvas.width, el.canvas.height);
    const pv = state.photoView.getContext("2d");
    pv.imageSmoothingQuality = "high";
    pv.drawImage(state.photo, 0, 0, el.canvas.width, el.canvas.height);
    state.maskView = canvasOf(el.canvas.width, el.canvas.height);
    state.maskView.getContext("2d", { willReadFrequently: true }); // read back by maskIsEmpty()
    replay();
  }

  // ------------------------------------------------------------------------------------------- the mask

  function contexts() {
    const full = state.maskFull.getContext("2d");
    const small = state.maskView.getContext("2d");
    full.setTransform(1, 0, 0, 1, 0, 0);
    const k = state.maskView.width / state.width;
    small.setTransform(k, 0, 0, k, 0, 0);
    return [full, small];
  }

  function paint(ctx, stroke, from) {
    ctx.globalCompositeOperation = stroke.tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = MASK_COLOR;
    ctx.lineWidth = stroke.size;
    ctx.lineCap = ctx.lineJoin = "round";
    const pts = stroke.points;
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], stroke.size / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(pts[Math.max(0, from - 1)][0], pts[Math.max(0, from - 1)][1]);
      for (let i = Math.max(1, from); i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
      ctx.stroke();
    }
    ctx.globalCompositeOperation = "source-over";
  }

  function apply(action, ctxs) {
    for (const ctx of ctxs) {
      if (action.tool === "clear") {
        ctx.save();
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
        ctx.restore();
      } else if (action.tool === "mask") {
        ctx.globalCompositeOperation = "source-over";
        ctx.drawImage(action.canvas, 0, 0, state.width, state.height);
      } else {
        paint(ctx, action, 0);
      }
    }
  }

  function replay() {
    if (!state.photo) return;
    const ctxs = contexts();
    apply({ tool: "clear" }, ctxs);
    for (const action of state.actions) apply(action, ctxs);
    render();
  }

  function render() {
    if (!state.photoView) return;
    const { width, height } = el.canvas;
    view.setTransform(1, 0, 0, 1, 0, 0);
    view.clearRect(0, 0, width, height);
    view.drawImage(state.photoView, 0, 0);
    view.globalAlpha = OVERLAY_ALPHA;
    view.drawImage(state.maskView, 0, 0);
    view.globalAlpha = 1;
    if (state.pointer) {
      const k = width / state.width;
      const r = (brushSize() * k) / 2;
      view.lineWidth = 1.5;
      for (const [color, dr] of [["rgba(0,0,0,0.7)", 1.5], ["rgba(255,255,255,0.95)", 0]]) {
        view.strokeStyle = color;
        view.beginPath();
        view.arc(state.pointer[0] * k, state.pointer[1] * k, Math.max(1, r + dr), 0, 2 * Math.PI);
        view.stroke();
      }
    }
  }

  function brushSize() { // the slider is in screen pixels; strokes are stored in image pixels
    return Number(el.size.value) / state.cssScale;
  }

  function toImage(event) {
    const rect = el.canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) / rect.width) * state.width,
      ((event.clientY - rect.top) / rect.height) * state.height,
    ];
  }

  function push(action) {
    state.actions.push(action);
    state.undone = [];
    updateButtons();
  }

  function undo() {
    if (!state.actions.length || state.stroke) return;
    state.undone.push(state.actions.pop());
    replay();
    updateButtons();
  }

  function redo() {
    if (!state.undone.length || state.stroke) return;
    state.actions.push(state.undone.pop());
    replay();
    updateButtons();
  }

  function clearMask() {
    if (!maskIsEmpty()) {
      push({ tool: "clear" });
      replay();
    }
  }

  function maskIsEmpty() {
    if (!state.maskView) return true;
    const { width, height } = state.maskView;
    const data = state.maskView.getContext("2d").getImageData(0, 0, width, height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return false;
    return true;
  }

  async function maskBlob() { // full resolution, white = hole on black
    const { width, height } = state;
    const white = canvasOf(width, height);
    const w = white.getContext("2d");
    w.drawImage(state.maskFull, 0, 0);
    w.globalCompositeOperation = "source-in";
    w.fillStyle = "#fff";
    w.fillRect(0, 0, width, height);
    const out = canvasOf(width, height);
    const o = out.getContext("2d");
    o.fillStyle = "#000";
    o.fillRect(0, 0, width, height);
    o.drawImage(white, 0, 0);
    return new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }

  async function loadMask(blob) { // white (or opaque on transparent) = hole, resized to the photo
    if (!state.photo) return showMessage("Open a photo before loading a mask.");
    let decoded;
    try {
      decoded = await decode(blob);
    } catch (err) {
      return showMessage(err.message);
    }
    const { width, height } = state;
    const c = canvasOf(width, height);
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(decoded.img, 0, 0, width, height);
    URL.revokeObjectURL(decoded.url);
    const image = ctx.getImageData(0, 0, width, height);
    const d = image.data;
    const [r, g, b] = MASK_COLOR.match(/\d+/g).map(Number);
    for (let i = 0; i < d.length; i += 4) {
      const hole = d[i + 3] >= 128 && 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2] > 127;
      d[i] = r; d[i + 1] = g; d[i + 2] = b; d[i + 3] = hole ? 255 : 0;
    }
    ctx.putImageData(image, 0, 0);
    push({ tool: "mask", canvas: c });
    replay();
    showMessage("");
  }

  async function saveMask() {
    const blob = await maskBlob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${baseName(state.name)}_mask.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // ------------------------------------------------------------------------------------------- inpaint

  function setBusy(busy) {
    state.busy = busy;
    el.busy.hidden = !busy;
    updateButtons();
    if (busy) {
      const t0 = performance.now();
      state.timer = setInterval(() => {
        el.busyText.textContent = `Inpainting… ${((performance.now() - t0) / 1000).toFixed(0)} s`;
      }, 1000);
      el.busyText.textContent = "Inpainting…";
    } else {
      clearInterval(state.timer);
    }
  }

  function b64ToBlob(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type: "image/png" });
  }

  async function inpaint() {
    if (state.busy) return;
    if (!state.photo) return showMessage("Open a photo first.");
    if (maskIsEmpty()) return showMessage("Paint over what should be removed first.", "warning");
    setBusy(true);
    showMessage("");
    try {
      const mask = await maskBlob();
      const total = state.file.size + mask.size;
      if (total > state.limits.max_upload_bytes) {
        throw new Error(`Photo and mask are ${(total / 2 ** 20).toFixed(1)} MB; the server accepts at most ` +
          `${(state.limits.max_upload_bytes / 2 ** 20).toFixed(0)} MB.`);
      }
      const samples = Number(el.samples.value);
      let seed = el.seed.value.trim();
      if (seed === "" && samples > 1) seed = String(Math.floor(Math.random() * 2 ** 31));
      const form = new FormData();
      form.append("image", state.file, state.name);
      form.append("mask", mask, "mask.png");
      form.append("samples", String(samples));
      form.append("dilate", String(Math.max(0, Math.min(64, Number(el.dilate.value) || 0))));
      if (seed !== "") form.append("seed", seed);
      form.append("texture", el.texture.checked ? String(state.textureStrength) : "0");
      const t0 = performance.now();
      let resp;
      try {
        resp = await fetch("api/inpaint?format=json", { method: "POST", body: form });
      } catch (err) {
        throw new Error(`Could not reach the server (${err.message}). Is "dualinpaint serve" still running?`);
      }
      if (!resp.ok) throw new Error(await errorText(resp));
      const data = await resp.json();
      const seconds = ((performance.now() - t0) / 1000).toFixed(1);
      showResults(data.images.map(b64ToBlob), `${seconds} s${data.seed != null ? ` · seed ${data.seed}` : ""}`);
      if (data.warnings && data.warnings.length) showMessage(`Note: ${data.warnings.join("; ")}`, "warning");
    } catch (err) {
      showMessage(err.message);
    } finally {
      setBusy(false);
    }
  }

  function showResults(blobs, info) {
    for (const url of state.resultUrls) URL.revokeObjectURL(url);
    state.results = blobs;
    state.resultUrls = blobs.map((b) => URL.createObjectURL(b));
    el.before.src = state.url;
    el.resultInfo.textContent = info;
    el.strip.replaceChildren();
    el.strip.hidden = blobs.length < 2;
    state.resultUrls.forEach((url, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thumb";
      button.title = `Variant ${i + 1}`;
      button.dataset.index = String(i);
      const img = document.createElement("img");
      img.src = url;
      img.alt = `variant ${i + 1}`;
      button.append(img);
      button.addEventListener("click", () => selectResult(i));
      el.strip.append(button);
    });
    el.resultPanel.hidden = false;
    el.panels.classList.add("has-result");
    selectResult(0);
    layout();
  }

  function selectResult(i) {
    state.selected = i;
    el.result.src = state.resultUrls[i];
    el.download.href = state.resultUrls[i];
    const suffix = state.results.length > 1 ? `_${i + 1}` : "";
    el.download.download = `${baseName(state.name)}_inpainted${suffix}.png`;
    el.strip.querySelectorAll(".thumb").forEach((b, j) => b.classList.toggle("selected", i === j));
  }

  function hideResults() {
    el.resultPanel.hidden = true;
    el.panels.classList.remove("has-result");
  }

  function useResult() {
    const blob = state.results[state.selected];
    if (blob) openImage(blob, `${baseName(state.name)}_inpainted.png`);
  }

  function setCompare(percent) {
    const p = Math.max(0, Math.min(100, percent));
    el.slider.value = String(p);
    el.result.style.clipPath = `inset(0 0 0 ${p}%)`;
    el.divider.style.left = `${p}%`;
  }

  // -------------------------------------------------------------------------------------------- wiring

  function updateButtons() {
    const has = Boolean(state.photo);
    el.undo.disabled = !state.actions.length;
    el.redo.disabled = !state.undone.length;
    el.clear.disabled = !has || !state.actions.length;
    el.maskDownload.disabled = !has;
    el.inpaint.disabled = !has || state.busy;
  }

  function setTool(tool) {
    state.tool = tool;
    for (const [button, name] of [[el.brush, "brush"], [el.eraser, "eraser"]]) {
      button.classList.toggle("active", tool === name);
      button.setAttribute("aria-pressed", String(tool === name));
    }
  }

  el.canvas.addEventListener("pointerdown", (e) => {
    if (!state.photo || e.button !== 0) return;
    el.canvas.setPointerCapture(e.pointerId);
    state.stroke = { tool: state.tool, size: brushSize(), points: [toImage(e)] };
    push(state.stroke);
    for (const ctx of contexts()) paint(ctx, state.stroke, 0);
    render();
  });
  el.canvas.addEventListener("pointermove", (e) => {
    if (!state.photo) return;
    state.pointer = toImage(e);
    if (state.stroke) {
      const pts = state.stroke.points;
      pts.push(state.pointer);
      for (const ctx of contexts()) paint(ctx, state.stroke, pts.length - 1);
    }
    render();
  });
  const endStroke = () => { state.stroke = null; updateButtons(); };
  el.canvas.addEventListener("pointerup", endStroke);
  el.canvas.addEventListener("pointercancel", endStroke);
  el.canvas.addEventListener("pointerleave", () => { state.pointer = null; render(); });

  el.file.addEventListener("change", () => {
    const f = el.file.files[0];
    if (f) openImage(f, f.name);
    el.file.value = "";
  });
  el.maskInput.addEventListener("change", () => {
    const f = el.maskInput.files[0];
    if (f) loadMask(f);
    el.maskInput.value = "";
  });
  el.maskDownload.addEventListener("click", saveMask);
  el.brush.addEventListener("click", () => setTool("brush"));
  el.eraser.addEventListener("click", () => setTool("eraser"));
  el.size.addEventListener("input", () => { el.sizeValue.textContent = el.size.value; render(); });
  el.undo.addEventListener("click", undo);
  el.redo.addEventListener("click", redo);
  el.clear.addEventListener("click", clearMask);
  el.inpaint.addEventListener("click", inpaint);
  el.useResult.addEventListener("click", useResult);
  el.slider.addEventListener("input", () => setCompare(Number(el.slider.value)));
  el.compare.addEventListener("pointermove", (e) => {
    if (e.buttons !== 1) return;
    const rect = el.compare.getBoundingClientRect();
    setCompare(((e.clientX - rect.left) / rect.width) * 100);
  });
  el.compare.addEventListener("pointerdown", (e) => {
    const rect = el.compare.getBoundingClientRect();
    setCompare(((e.clientX - rect.left) / rect.width) * 100);
  });

  document.addEventListener("keydown", (e) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName) && e.target.type !== "range";
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    if (mod && key === "z" && !typing) {
      e.preventDefault();
      if (e.shiftKey) redo(); else undo();
    } else if (mod && key === "y" && !typing) {
      e.preventDefault();
      redo();
    } else if (mod && key === "enter") {
      e.preventDefault();
      inpaint();
    } else if (!mod && !typing && !e.altKey) {
      if (key === "b") setTool("brush");
      else if (key === "e") setTool("eraser");
      else if (key === "[" || key === "]") {
        const step = Math.max(2, Math.round(Number(el.size.value) * 0.15));
        el.size.value = String(Number(el.size.value) + (key === "]" ? step : -step));
        el.size.dispatchEvent(new Event("input"));
      }
    }
  });

  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => { e.preventDefault(); el.drop.classList.add("dragging"); });
  }
  document.addEventListener("dragleave", () => el.drop.classList.remove("dragging"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    el.drop.classList.remove("dragging");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) openImage(f, f.name);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
    if (item) openImage(item.getAsFile(), "pasted.png");
  });

  let lastWidth = 0;
  new ResizeObserver(() => { // re-fit when the panel gets narrower or wider (not when it grows taller)
    if (el.editor.clientWidth !== lastWidth) { lastWidth = el.editor.clientWidth; layout(); }
  }).observe(el.editor);
  window.addEventListener("resize", () => layout());
  setCompare(50);
  updateButtons();

  fetch("api/health")
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`${r.status} ${r.statusText}`))))
    .then((h) => {
      Object.assign(state.limits, h.limits || {});
      const texture = (h.defaults && h.defaults.texture) || 0;
      if (texture > 0) { state.textureStrength = texture; el.texture.checked = true; }
      el.modelInfo.textContent = `model: ${h.model} · v${h.version}`;
      el.samples.querySelectorAll("option").forEach((o) => { o.disabled = Number(o.value) > state.limits.max_samples; });
    })
    .catch((err) => {
      el.modelInfo.textContent = "server not reachable";
      showMessage(`Could not reach the server (${err.message}).`);
    });

  window.dualinpaint = { state, openImage, inpaint, undo, redo }; // for tests and the console
})();
