// The drawing page: a canvas with undo, live predictions while drawing, and image upload.
// Plain JavaScript, no dependencies: the page must work with no internet access.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const strokeInput = $("stroke");
const bars = $("bars");
const pieces = $("pieces");  // the per-digit views of a number

const strokes = [];          // each: {width, points: [[x, y], ...]}; redrawn from scratch on undo
let current = null;          // the stroke being drawn
let source = "canvas";       // what the last prediction was of: "canvas" or "file"
let uploaded = null;         // a promise of the uploaded image (scaled down if big), resent when the mode changes
let latest = 0;              // number of the latest request: answers to older ones are dropped
let inFlight = false;        // the latest request is on its way: drawing waits for it (one at a time)
let dirty = false;           // the drawing changed meanwhile: sent when the answer comes back
let debounce = null;
const DEBOUNCE_MS = 120;
let maxUploadBytes = 5 * 1024 * 1024;  // the server's limit, updated from /api/model
const MAX_SIDE = 1600;       // longer side of big images once scaled down: plenty for a digit

// ---------------------------------------------------------------- probability bars

for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.innerHTML = `<span class="label">${d}</span><span class="track"><span class="fill"></span></span>` +
    `<span class="pct">&ndash;</span>`;
  bars.appendChild(li);
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

// ---------------------------------------------------------------- drawing

function redraw() {
  ctx.fillStyle = "#fff";  // opaque white paper: the server sees dark ink on light, like a scan
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of strokes) {
    ctx.lineWidth = s.width;
    ctx.beginPath();
    ctx.moveTo(s.points[0][0], s.points[0][1]);
    // A single click still leaves a dot.
    if (s.points.length === 1) ctx.lineTo(s.points[0][0] + 0.01, s.points[0][1]);
    for (const [x, y] of s.points.slice(1)) ctx.lineTo(x, y);
    ctx.stroke();
  }
  const empty = strokes.length === 0;
  $("pad-hint").hidden = !empty;
  $("undo").disabled = empty;
  $("clear").disabled = empty && !uploaded;
}

function point(event) {
  // Canvas pixels, whatever size CSS gives the canvas on screen.
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * (pad.width / rect.width),
          (event.clientY - rect.top) * (pad.height / rect.height)];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  current = {width: Number(strokeInput.value), points: [point(event)]};
  strokes.push(current);
  useCanvas();
  redraw();
  schedule();
});

pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) current.points.push(point(e));
  redraw();
  schedule();
});

function endStroke() {
  if (!current) return;
  current = null;
  schedule(0);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("undo").addEventListener("click", () => {
  strokes.pop();
  useCanvas();
  redraw();
  if (strokes.length) schedule(0); else showIdle();
});

$("clear").addEventListener("click", () => {
  strokes.length = 0;
  useCanvas();
  redraw();
  showIdle();
});

strokeInput.addEventListener("input", () => {
  $("stroke-value").textContent = `${strokeInput.value} px`;
});

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    forgetRequests();  // an answer for the other mode is out of date
    if (source === "file" && uploaded) send(uploaded);
    else if (strokes.length) schedule(0);
    else showIdle();
  });
}

// ---------------------------------------------------------------- upload

const drop = $("drop");
const fileInput = $("file");
drop.addEventListener("click", () => fileInput.click());
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
});
fileInput.addEventListener("change", () => {
  if (fileInput.files.length) useFile(fileInput.files[0]);
  fileInput.value = "";
});
// The drop zone and the drawing pad light up under a dragged file.
for (const target of [drop, pad]) {
  for (const name of ["dragenter", "dragover"]) target.addEventListener(name, () => target.classList.add("over"));
  for (const name of ["dragleave", "drop"]) target.addEventListener(name, () => target.classList.remove("over"));
}
// A file dropped anywhere on the page is read (and the browser does not navigate away to show it).
for (const name of ["dragenter", "dragover"]) window.addEventListener(name, (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  if (event.dataTransfer && event.dataTransfer.files.length) useFile(event.dataTransfer.files[0]);
});

function useFile(file) {
  clearTimeout(debounce);  // a drawing change not yet sent is superseded by the file
  source = "file";
  uploaded = shrink(file);
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  redraw();  // enables Clear
  send(uploaded);
}

// Back to reading the drawing: the upload and its thumbnail go.
function useCanvas() {
  if (source === "file") forgetUpload();
  source = "canvas";
}

function forgetUpload() {
  uploaded = null;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  preview.hidden = true;
}

// A phone photo (12 MP, ~8 MB) is over the server's upload limit: images whose longer side is over
// MAX_SIDE, or whose file is over the limit, are redrawn at most MAX_SIDE pixels long and re-encoded.
// Anything else, or anything the browser cannot decode (TIFF), is sent as it is.
async function shrink(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {imageOrientation: "from-image"});  // EXIF rotation applied
  } catch {
    return file;
  }
  const longer = Math.max(bitmap.width, bitmap.height);
  if (longer <= MAX_SIDE && file.size <= maxUploadBytes) {
    bitmap.close();
    return file;
  }
  const scale = Math.min(1, MAX_SIDE / longer);
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const c = canvas.getContext("2d");
  c.imageSmoothingQuality = "high";
  // PNG keeps the transparency of images that may have some (the server picks the paper colour
  // from it); JPEG, much smaller, for photos, on white in case the PNG was still too big.
  const draw = () => c.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  draw();
  let blob = null;
  if (/png|gif|webp/.test(file.type)) blob = await encode(canvas, "image/png");
  if (!blob || blob.size > maxUploadBytes) {
    c.fillStyle = "#fff";
    c.fillRect(0, 0, canvas.width, canvas.height);
    draw();
    blob = await encode(canvas, "image/jpeg", 0.92);
  }
  bitmap.close();
  return blob || file;
}

function encode(canvas, type, quality) {
  return new Promise((resolve) => canvas.toBlob(resolve, type, quality));
}

// ---------------------------------------------------------------- predicting

// document.body.dataset.state: "idle" (nothing to read), "pending" (a change not yet sent),
// "busy" (a request in flight) or "done" (the result on screen is for the latest drawing).
function schedule(delay = DEBOUNCE_MS) {
  document.body.dataset.state = "pending";
  clearTimeout(debounce);
  debounce = setTimeout(sendCanvas, delay);
}

// The drawing is sent at a quarter of the canvas' size (105x70): a digit drawn across the pad is still
// twice the 20-pixel box the model gets, and a sixteenth of the pixels to upload and decode keeps live
// predictions quick (a half-size upload measured 965 against 1,301 requests/s on two cores).
const upload = document.createElement("canvas");
upload.width = pad.width / 4;
upload.height = pad.height / 4;

function sendCanvas() {
  if (!strokes.length || source !== "canvas") return;
  if (inFlight) { dirty = true; return; }
  const c = upload.getContext("2d");
  c.imageSmoothingQuality = "high";
  c.drawImage(pad, 0, 0, upload.width, upload.height);
  send(encode(upload, "image/png"));
}

// Sends an image (or a promise of one) to be read. Every call makes the requests before it out of
// date, and so do Clear and a change of mode: only the answer to the latest request is shown.
async function send(image) {
  const id = ++latest;
  const isLatest = () => id === latest;
  inFlight = true;
  dirty = false;
  document.body.dataset.state = "busy";
  const url = mode() === "number" ? "/api/predict-number" : "/api/predict";
  try {
    const blob = await image;
    if (!isLatest()) return;
    const form = new FormData();
    form.append("file", blob, blob.name || (blob.type === "image/jpeg" ? "image.jpg" : "image.png"));
    const response = await fetch(url, {method: "POST", body: form});
    const body = await response.json().catch(() => ({detail: `HTTP ${response.status}`}));
    if (!isLatest()) return;
    if (response.ok) show(body); else showError(body);
  } catch (error) {
    if (isLatest()) showError({detail: `the server could not be reached (${error.message})`});
  } finally {
    // A newer request, or Clear, owns the state now.
    if (isLatest()) {
      inFlight = false;
      if (dirty) sendCanvas();
      if (!inFlight) document.body.dataset.state = "done";
    }
  }
}

// Drops the answers still on their way (after Clear, or a change of mode).
function forgetRequests() {
  latest++;
  inFlight = false;
  dirty = false;
  clearTimeout(debounce);
}

function show(result) {
  const number = "number" in result;
  const notDigit = number ? result.not_a_number : result.not_a_digit;
  const digitBox = $("digit");
  digitBox.textContent = notDigit ? "?" : number ? result.number : String(result.digit);
  digitBox.classList.toggle("long", !notDigit && number && result.number.length > 2);
  digitBox.classList.toggle("idle", notDigit);
  const count = number ? result.digits.filter((d) => !d.not_a_digit).length : 0;
  const what = number ? `${count} digit${count === 1 ? "" : "s"}` : "";
  if (notDigit) {
    setStatus(number ? "This does not look like a number" : "This does not look like a digit");
  } else {
    setStatus(`${what ? what + ", " : ""}confidence ${(100 * result.confidence).toFixed(1)}%`);
  }
  const skipped = number ? result.digits.length - count : 0;
  $("flag").textContent = notDigit ? "Write a single digit from 0 to 9, large and clear" :
    skipped ? `${skipped} mark${skipped === 1 ? "" : "s"} that are not digits left out` :
    result.low_confidence ? "Low confidence: try writing it larger or more clearly" : "";
  showMode(number);
  if (number) {
    showPieces(result.digits);
  } else {
    showBars(result.probabilities, notDigit ? -1 : result.digit);
    drawPixels($("seen"), result.processed);
  }
  const t = result.timing;
  $("timing").textContent = `Server time ${t.total_ms.toFixed(1)} ms: ` +
    `preprocessing ${t.preprocess_ms.toFixed(1)}, model ${t.inference_ms.toFixed(1)}`;
}

function showMode(number) {
  // One digit: probability bars and the big 28x28 view. A number: a small 28x28 view per digit.
  bars.hidden = number;
  $("seen-box").hidden = number;
  $("pieces-box").hidden = !number;
}

function showBars(probabilities, top) {
  bars.querySelectorAll("li").forEach((li, d) => {
    const p = probabilities ? probabilities[d] : 0;
    li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    li.querySelector(".pct").textContent = probabilities ? `${(100 * p).toFixed(1)}%` : "–";
    li.classList.toggle("top", d === top);
  });
}

function showPieces(digits) {
  pieces.innerHTML = "";
  for (const d of digits) {
    const li = document.createElement("li");
    li.className = d.low_confidence ? "low" : "";
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 28;
    drawPixels(canvas, d.processed);
    const label = document.createElement("b");
    label.textContent = d.not_a_digit ? "–" : d.digit;
    if (d.not_a_digit) li.className = "low";
    li.append(canvas, label, `${(100 * d.confidence).toFixed(0)}%`);
    pieces.appendChild(li);
  }
}

function drawPixels(canvas, rows) {
  const image = canvas.getContext("2d").createImageData(28, 28);
  rows.flat().forEach((v, i) => {
    image.data.set([v, v, v, 255], 4 * i);
  });
  canvas.getContext("2d").putImageData(image, 0, 0);
}

function clearPixels() {
  const c = $("seen").getContext("2d");
  c.fillStyle = "#000";
  c.fillRect(0, 0, 28, 28);
}

function setStatus(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

// Empty the result panel, leaving `symbol` where the digit goes.
function clearResult(symbol) {
  const digitBox = $("digit");
  digitBox.textContent = symbol;
  digitBox.classList.add("idle");
  digitBox.classList.remove("long");
  $("flag").textContent = "";
  showBars(null, -1);
  showMode(false);
  pieces.innerHTML = "";
  clearPixels();
  $("timing").textContent = "";
}

function showError(body) {
  clearResult("?");
  const message = body.error === "no_digit" ? "No digit found in the image" : body.detail || "Something went wrong";
  setStatus(message.charAt(0).toUpperCase() + message.slice(1), true);
}

function showIdle() {
  forgetRequests();
  clearResult("–");
  setStatus(mode() === "number" ? "Write a number to start" : "Draw a digit to start");
  document.body.dataset.state = "idle";
}

// ---------------------------------------------------------------- start

fetch("/api/model").then((r) => r.json()).then((info) => {
  if (info.max_upload_bytes) maxUploadBytes = info.max_upload_bytes;
  const accuracy = info.test_accuracy ? ` · ${(100 * info.test_accuracy).toFixed(2)}% on MNIST test` : "";
  $("model").textContent = `Model: ${info.name}${accuracy}`;
}).catch(() => {});

redraw();
showIdle();
