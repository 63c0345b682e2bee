// fakeface single page: upload an image, show the verdict, the face box and the heatmap.
// A face whose P(fake) lies in the model's "uncertain" band gets no real/fake verdict: the page
// says plainly that the detector cannot tell.
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  drop: $("drop"), file: $("file"), preview: $("preview"), dropText: $("drop-text"),
  method: $("method"), opacity: $("opacity"), opacityValue: $("opacity-value"),
  status: $("status"), error: $("error"), result: $("result"),
  verdict: $("verdict"), reason: $("reason"), probBlock: $("prob-block"),
  probFill: $("prob-fill"), thresholdMark: $("threshold-mark"), bandMark: $("band-mark"),
  probText: $("prob-text"), thresholdLabel: $("threshold-label"), ticks: $("ticks"),
  details: $("details"), boxed: $("boxed"), heatFigure: $("heat-figure"),
  heatBase: $("heat-base"), heatmap: $("heatmap"), heatCaption: $("heat-caption"),
  boxedCaption: $("boxed-caption"), modelInfo: $("model-info"),
};
const METHOD_NAMES = { "gradcam++": "Grad-CAM++", smoothgrad: "SmoothGrad", scorecam: "Score-CAM" };
const VERDICT_KINDS = { "real face": "real", "fake face": "fake", uncertain: "uncertain" };
let currentFile = null;
let busy = false;

const pct = (x) => `${(100 * x).toFixed(1)}%`;
const bandText = (band) => `${pct(band.low)}–${pct(band.high)}`;

// The score bar's scale: the log-odds of P(fake) from 0.1 % to 99.9 %, so 0.2 % and 99.8 % show
// as plainly as 50 % (on a linear bar 0.2 % is half a pixel); ticks say where 1 %, 10 %, ... lie.
// core/plots.py draws the PNGs' bar on the same scale (matplotlib's logit axis).
const SCALE_END = 0.001;
const TICKS = [0.01, 0.1, 0.5, 0.9, 0.99];
const logit = (p) => Math.log(p / (1 - p));
const clip = (p) => Math.min(Math.max(p, SCALE_END), 1 - SCALE_END);
const position = (p) => (logit(clip(p)) - logit(SCALE_END)) / (2 * logit(1 - SCALE_END));
const at = (p) => `${(100 * position(p)).toFixed(2)}%`;
// P(fake) in words a person reads right: beyond the scale's ends, "< 0.1%" rather than "0.0%".
const probText = (p) => (p < SCALE_END ? "< 0.1%" : p > 1 - SCALE_END ? "> 99.9%" : pct(p));

// Why there is no real/fake verdict for this face, in words.
const uncertainSentence = (r) => "The detector cannot tell whether this face is real or generated " +
  `(P(fake) ${pct(r.probability)} lies in its uncertain band ${bandText(r.band)}).`;

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = false;
}

function setBusy(on) {
  busy = on;
  els.status.hidden = !on;
  els.method.disabled = on;
  els.drop.setAttribute("aria-busy", on ? "true" : "false");
}

function chooseFile(file) {
  if (!file) return;
  currentFile = file;
  els.preview.src = URL.createObjectURL(file);
  els.preview.hidden = false;
  const name = document.createElement("strong");
  name.textContent = file.name;
  els.dropText.replaceChildren(name, document.createElement("br"), "drop or click for another image");
  analyse();
}

async function analyse() {
  if (!currentFile || busy) return;
  els.error.hidden = true;
  setBusy(true);
  const form = new FormData();
  form.append("file", currentFile);
  form.append("explain", els.method.value);
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const reason = body && body.error ? body.error : `the server answered ${response.status}`;
      throw new Error(`Could not analyse this file: ${reason}`);
    }
    render(body);
  } catch (err) {
    els.result.hidden = true;
    showError(err instanceof TypeError ? "Could not reach the server. Is `fakeface serve` still running?" : err.message);
  } finally {
    setBusy(false);
  }
}

function reasonFor(kind, r) {
  if (kind === "none") return r.face_reason || "no face was found";
  return kind === "uncertain" ? uncertainSentence(r) : "";
}

function showBand(band) {
  els.bandMark.hidden = !band;
  if (!band) return;
  els.bandMark.style.left = at(band.low);
  els.bandMark.style.width = `${(100 * (position(band.high) - position(band.low))).toFixed(2)}%`;
}

function showScore(kind, r) {
  els.probText.textContent = `P(fake) ${probText(r.probability)}`;
  els.probFill.style.width = at(r.probability);
  els.probFill.className = `fill ${kind}`;
  els.thresholdMark.style.left = at(r.threshold);
  els.thresholdLabel.textContent = `threshold ${probText(r.threshold)}`;
  const x = position(r.threshold);  // the label stays over the bar near its ends
  els.thresholdLabel.className = `mark-label ${x < 0.2 ? "start" : x > 0.8 ? "end" : ""}`;
  showBand(r.band);
}

function drawTicks() {
  els.ticks.replaceChildren(...TICKS.map((t) => {
    const tick = document.createElement("span");
    tick.textContent = `${+(100 * t).toFixed(1)}%`;
    tick.style.left = at(t);
    return tick;
  }));
}

function heatCaption(kind, r) {
  const name = METHOD_NAMES[r.explain] || r.explain;
  if (kind !== "uncertain") return `${name}: bright = pushed the model towards "${r.verdict}"`;
  const lean = r.probability >= r.threshold ? "fake face" : "real face";
  return `${name}: bright = pushed the model towards "${lean}", though not far enough to decide`;
}

function render(r) {
  const kind = VERDICT_KINDS[r.verdict] || "none";
  els.verdict.textContent = r.verdict;
  els.verdict.className = `verdict ${kind}`;
  els.reason.textContent = reasonFor(kind, r);
  els.reason.className = `reason ${kind}`;

  els.probBlock.hidden = r.probability === null;
  if (r.probability !== null) showScore(kind, r);
  const rows = kind === "none" ? [] : [["threshold", pct(r.threshold)]];
  if (r.band && kind !== "none") rows.push(["uncertain band", `${bandText(r.band)} (α = ${r.band.alpha})`]);
  rows.push(["face", r.face_status]);
  if (r.box) rows.push(["box", r.box.map((v) => Math.round(v)).join(", ") + " (x, y, w, h)"]);
  // The turn that levelled the eyes, only when there was one worth a word (as `fakeface predict`).
  if (r.box && Math.abs(r.angle) > 1) rows.push(["eyes levelled by", `${r.angle.toFixed(1)}°`]);
  if (r.face_confidence) rows.push(["face confidence", pct(r.face_confidence)]);
  els.details.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));

  const png = (b64) => `data:image/png;base64,${b64}`;
  els.boxed.src = png(r.images.boxed);
  els.boxedCaption.textContent = kind === "none" ? "Uploaded image (no face used)" : "Uploaded image and detected face";
  els.heatFigure.hidden = !r.images.heatmap;
  if (r.images.heatmap) {
    els.heatBase.src = png(r.images.boxed);
    els.heatmap.src = png(r.images.heatmap);
    els.heatCaption.textContent = heatCaption(kind, r);
    applyOpacity();
  }
  els.result.hidden = false;
}

function applyOpacity() {
  els.opacityValue.textContent = `${els.opacity.value}%`;
  els.heatmap.style.opacity = els.opacity.value / 100;
}

els.file.addEventListener("change", () => chooseFile(els.file.files[0]));
els.method.addEventListener("change", analyse);
els.opacity.addEventListener("input", applyOpacity);
els.drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") els.file.click(); });
["dragenter", "dragover"].forEach((t) => els.drop.addEventListener(t, (e) => {
  e.preventDefault(); els.drop.classList.add("over");
}));
["dragleave", "drop"].forEach((t) => els.drop.addEventListener(t, (e) => {
  e.preventDefault(); els.drop.classList.remove("over");
}));
els.drop.addEventListener("drop", (e) => chooseFile(e.dataTransfer.files[0]));
applyOpacity();
drawTicks();

async function showModel() {
  try {
    const health = await (await fetch("/api/health")).json();
    const m = health.model;
    els.modelInfo.textContent = `Model: ${m.name}` + (m.architecture ? ` (${m.architecture})` : "") +
      `, version ${m.version}; decision threshold ${pct(health.threshold)}.` +
      (health.band ? ` P(fake) in ${bandText(health.band)} is called uncertain.` : "");
  } catch (_) { /* the page still works without it */ }
}
showModel();
