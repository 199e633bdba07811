// The page: text, bias, seed and a style in; handwriting out, stroke by stroke.
//
// The sampler runs in worker.js (LiteRT.js in a Web Worker); this module checks what the
// person typed (text.js), turns a line written on the pad or loaded from a file into a prime
// (pad.js, strokes.js), shows the points as they come and saves the result. The model is the
// server's base model or, once "Make it my hand" (hand.js) has made it, the personal one: a
// new worker loads the model chosen.

import { MODELS_URL, MyHand, requestJson } from "./hand.js";
import { Pad } from "./pad.js";
import {
  dataScale,
  LiveSvg,
  MAX_JSON_BYTES,
  padToStrokes,
  parseStrokeJson,
  primeError,
  svgToPng,
  toStrokeJson,
  toSvg,
} from "./strokes.js";
import { describe, findProblems, textError, wrap } from "./text.js";

// The models when the server lists none (a static host): the export in model/.
const BASE_MODELS = [{ id: "base", label: "Base model", url: "model/", fingerprint: null }];
// Shipped styles shown as thumbnails.
const MAX_THUMBNAILS = 6;
// PNG: pixels per line of handwriting (the command line's default --height).
const PNG_LINE_PX = 128;
const SEED_LIMIT = 2 ** 32;

const $ = (id) => document.getElementById(id);
const page = {
  models: BASE_MODELS, // what the model list offers: {id, label, url, fingerprint}
  model: null, // the one loaded or loading
  modelUrl: null, // its absolute URL
  meta: null,
  textLength: null,
  scale: null, // dataScale(): the data's line height and step between points
  styles: [], // the model's styles.json lines: {id, text, strokes}
  style: null, // the prime: null or {id, text, strokes}
  mine: null, // the person's own line, once used or loaded: {text, strokes, source}
  job: 0,
  lines: [], // the lines being written or written: {text, parts: [Float32Array], strokes}
  primed: false,
  lastRun: null, // {points, seconds, lines, variant}
  requests: 0, // write requests sent to the worker
};
window.handwritingPage = page; // for the browser tests and the curious

let worker = null;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) $("status").textContent = message;
  const writing = state === "writing";
  $("stop").disabled = !writing;
  $("model").disabled = state === "loading";
  refreshWriteButton();
}

function fail(message) {
  setState("error", `Error: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  const pad = new Pad($("pad"), () => updatePadMessage());
  page.pad = pad;
  $("undo").onclick = () => pad.undo();
  $("clear").onclick = () => pad.clear();
  $("use-pad").onclick = useOwnLine;
  $("save-line").onclick = saveOwnLine;
  $("load-line").onchange = loadOwnLine;
  $("write").onclick = write;
  $("stop").onclick = stop;
  $("save-svg").onclick = () =>
    download(new Blob([resultSvg()], { type: "image/svg+xml" }), "handwriting.svg");
  $("save-png").onclick = savePng;
  $("save-json").onclick = () =>
    download(
      new Blob([toStrokeJson(finishedLines())], { type: "application/json" }),
      "handwriting.json",
    );
  for (const id of ["text", "width", "bias", "seed"]) $(id).addEventListener("input", checkInputs);
  $("text").addEventListener("scroll", () => {
    $("text-marks").scrollTop = $("text").scrollTop;
  });
  $("pad-text").addEventListener("input", () => updatePadMessage());
  $("model").onchange = () => loadModel($("model").value);
  page.hand = new MyHand({
    padLine,
    clearPad: () => {
      pad.clear();
      $("pad-text").value = "";
    },
    lineHeight: () => page.scale?.lineHeight ?? 1,
    onReady: async () => {
      await listModels();
      loadModel("mine");
    },
  });
  await listModels();
  loadModel("base");
  await page.hand.start();
}

// ---------------------------------------------------------------------------------------------
// The models: the base model and the personal one

// The server's list of models (none on a static host: the export in model/ only).
async function listModels() {
  try {
    const answer = await requestJson(MODELS_URL);
    if (answer.ok && Array.isArray(answer.body?.models)) page.models = answer.body.models;
  } catch {
    page.models = BASE_MODELS;
  }
  const choice = $("model");
  choice.replaceChildren();
  for (const model of page.models) {
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = model.label;
    choice.append(option);
  }
  if (page.model) choice.value = page.model.id;
  $("model-choice").hidden = page.models === BASE_MODELS;
}

// Loads model `id` in a new worker (the old one, and its wasm memory, go).
function loadModel(id) {
  const model = page.models.find((m) => m.id === id) || page.models[0];
  if (worker) worker.terminate();
  page.job += 1; // whatever the old worker was writing is gone
  page.model = model;
  page.modelUrl = new URL(model.url, window.location.href).href;
  document.body.dataset.model = model.id;
  page.meta = null;
  $("model").value = model.id;
  setState("loading", `Loading the model (${model.label}) and warming it up…`);
  worker = new Worker("worker.js");
  worker.onmessage = (event) => onWorkerMessage(event.data);
  worker.onerror = (event) => fail(`the sampler's worker failed: ${event.message}`);
  worker.postMessage({ type: "load", modelUrl: page.modelUrl });
}

async function loadStyles() {
  const response = await fetch(new URL("styles.json", page.modelUrl));
  if (!response.ok) return []; // a model without styles: the pad and files still work
  const obj = await response.json();
  return (obj.lines || []).map((line) => ({
    id: String(line.id),
    text: line.text,
    strokes: Float32Array.from(line.strokes.flat()),
  }));
}

async function onReady({ meta, textLength, loadSeconds }) {
  const model = page.model;
  let styles = [];
  try {
    styles = await loadStyles();
  } catch (error) {
    $("pad-message").textContent = `The model's styles.json could not be read (${error.message}).`;
  }
  if (model !== page.model) return; // another model was chosen meanwhile
  page.meta = meta;
  page.textLength = textLength;
  page.styles = styles;
  page.scale = dataScale(page.styles, meta.normalization);
  if (page.style && page.style.key !== "mine") page.style = null; // the other model's style
  renderStyleList();
  page.hand.show();
  setState(
    "ready",
    `Ready (${model.label}, loaded in ${loadSeconds.toFixed(1)} s). Type, then press Write.`,
  );
  checkInputs();
}

// ---------------------------------------------------------------------------------------------
// Checking the text

function alphabet() {
  return page.meta ? page.meta.alphabet.chars : "";
}

// Marks each character the model cannot write in the text box and lists them with the
// reason; returns whether the text can be written.
function checkText() {
  const text = $("text").value;
  const problems = page.meta ? findProblems(text, alphabet()) : [];
  const marks = $("text-marks");
  marks.replaceChildren();
  let at = 0;
  for (const p of problems) {
    marks.append(text.slice(at, p.offset));
    const mark = document.createElement("mark");
    mark.textContent = p.char;
    mark.title = p.reason;
    marks.append(mark);
    at = p.offset + p.length;
  }
  marks.append(`${text.slice(at)}\n`);
  const list = $("text-problems");
  list.replaceChildren();
  for (const p of problems.slice(0, 10)) {
    const before = text.slice(0, p.offset).split("\n");
    const item = document.createElement("li");
    item.textContent =
      `Line ${before.length}, column ${[...before[before.length - 1]].length + 1}: ` +
      `${describe(p.char)} ${p.reason}; it is not sent to the model.`;
    list.append(item);
  }
  if (problems.length > 10) {
    const item = document.createElement("li");
    item.textContent = `… and ${problems.length - 10} more.`;
    list.append(item);
  }
  return problems.length === 0 && !textError(text, alphabet());
}

function numberInput(id, { min, max, integer }) {
  const raw = $(id).value.trim();
  const value = Number(raw);
  const ok = raw !== "" && Number.isFinite(value) && value >= min && value <= max;
  if (!ok || (integer && !Number.isInteger(value))) return null;
  return value;
}

function settings() {
  return {
    bias: numberInput("bias", { min: 0, max: 100, integer: false }),
    seed: numberInput("seed", { min: 0, max: SEED_LIMIT - 1, integer: true }),
    width: numberInput("width", { min: 1, max: 10000, integer: true }),
  };
}

function checkInputs() {
  const textOk = checkText();
  const values = settings();
  for (const name of ["bias", "seed", "width"]) {
    $(name).setAttribute("aria-invalid", values[name] === null ? "true" : "false");
  }
  refreshWriteButton(textOk && Object.values(values).every((v) => v !== null));
}

function refreshWriteButton(valid) {
  const ready = ["ready", "done"].includes(document.body.dataset.state);
  if (valid === undefined) valid = $("write").dataset.valid === "true";
  $("write").dataset.valid = String(Boolean(valid));
  $("write").disabled = !(ready && valid);
}

// ---------------------------------------------------------------------------------------------
// Writing

function write() {
  if (!page.meta || $("write").disabled) return;
  const text = $("text").value;
  const problem = textError(text, alphabet());
  const { bias, seed, width } = settings();
  if (problem || bias === null || seed === null || width === null) {
    setState(
      document.body.dataset.state,
      problem
        ? `Not written: ${problem}.`
        : "Not written: check bias, seed and characters per line.",
    );
    return;
  }
  const prime = page.style;
  // A primed line is read as `prime text + " " + line`; the sampler reads textLength characters.
  let lineWidth = width;
  let note = "";
  if (prime) {
    const room = page.textLength - [...prime.text].length - 1;
    if (room < 1) {
      setState(
        document.body.dataset.state,
        `Not written: the style's text is ${[...prime.text].length} characters long; the ` +
          `sampler reads ${page.textLength} with the line. Use a shorter line as the style.`,
      );
      return;
    }
    if (room < lineWidth) {
      lineWidth = room;
      note = ` Lines hold at most ${room} characters with this style.`;
    }
  } else if (page.textLength < lineWidth) {
    lineWidth = page.textLength;
    note = ` The sampler reads at most ${page.textLength} characters per line.`;
  }
  const lines = wrap(text, lineWidth);
  page.job += 1;
  page.requests += 1;
  page.primed = Boolean(prime);
  page.lines = lines.map((line) => ({ text: line, parts: [], strokes: null }));
  page.variant = $("int8").checked ? "int8" : "float32";
  setState("writing", `Writing ${lines.length} line${lines.length === 1 ? "" : "s"}…${note}`);
  for (const id of ["save-svg", "save-png", "save-json"]) $(id).disabled = true;
  page.live = new LiveSvg($("output"), lines, page.scale.lineHeight);
  if (!prime) lines.forEach((_, i) => page.live.add(i, new Float32Array(3))); // the start point
  worker.postMessage({
    type: "write",
    job: page.job,
    lines,
    bias,
    seed,
    int8: page.variant === "int8",
    prime: prime ? { text: prime.text, strokes: prime.strokes } : null,
  });
}

function stop() {
  worker.postMessage({ type: "cancel", job: page.job });
}

function onWorkerMessage(message) {
  if (message.type === "ready") {
    onReady(message);
    return;
  }
  if (message.type === "error") {
    // Before the model is ready nothing works; a line the sampler refused leaves it usable.
    if (!page.meta) fail(message.message);
    else setState("ready", `Not written: ${message.message}.`);
    return;
  }
  if (message.job !== page.job) return; // a cancelled job's last words
  const line = page.lines[message.line];
  if (message.type === "points") {
    line.parts.push(message.points);
    page.live.add(message.line, message.points);
  } else if (message.type === "line") {
    const received = line.parts.reduce((n, p) => n + p.length, 0);
    page.live.add(message.line, message.strokes.subarray(received + (page.primed ? 0 : 3)));
    line.strokes = message.strokes;
    line.finished = message.finished;
  } else if (message.type === "done") {
    page.lastRun = {
      points: message.points,
      seconds: message.seconds,
      lines: page.lines.length,
      variant: page.variant,
    };
    const rate = message.seconds > 0 ? Math.round(message.points / message.seconds) : 0;
    const unfinished = page.lines.filter((l) => !l.finished).length;
    setState(
      "done",
      `Wrote ${page.lines.length} line${page.lines.length === 1 ? "" : "s"}: ${message.points} ` +
        `points in ${message.seconds.toFixed(2)} s (${rate} points per second, ${page.variant}).` +
        (unfinished ? ` ${unfinished} line(s) ran out of points before the end.` : ""),
    );
    for (const id of ["save-svg", "save-png", "save-json"]) $(id).disabled = false;
    $("output").innerHTML = resultSvg(); // the picture the downloads hold (the same geometry)
  } else if (message.type === "cancelled") {
    setState("ready", "Stopped.");
  }
}

// The strokes of a line so far: the final ones, else the points received (after the start
// point on an unprimed line).
function currentStrokes(line) {
  if (line.strokes) return line.strokes;
  const origin = page.primed ? 0 : 1;
  const count = line.parts.reduce((n, p) => n + p.length, 0);
  const strokes = new Float32Array(count + 3 * origin);
  let at = 3 * origin;
  for (const part of line.parts) {
    strokes.set(part, at);
    at += part.length;
  }
  return strokes;
}

function finishedLines() {
  return page.lines.map((line) => ({ text: line.text, strokes: currentStrokes(line) }));
}

function resultSvg() {
  return toSvg(finishedLines(), page.scale.lineHeight);
}

async function savePng() {
  const scale = PNG_LINE_PX / (page.scale.lineHeight * 1.6);
  download(await svgToPng(resultSvg(), scale), "handwriting.png");
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// ---------------------------------------------------------------------------------------------
// Styles: the model's, and the person's own line

function renderStyleList() {
  const list = $("style-list");
  list.replaceChildren();
  const entries = [{ key: "none", label: "The model's own", style: null }];
  for (const style of page.styles.slice(0, MAX_THUMBNAILS)) {
    entries.push({ key: `style:${style.id}`, label: style.text, style });
  }
  if (page.mine) entries.push({ key: "mine", label: `Mine: ${page.mine.text}`, style: page.mine });
  for (const entry of entries) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "style";
    button.dataset.key = entry.key;
    button.setAttribute("role", "radio");
    const selected = (page.style?.key ?? "none") === entry.key;
    button.setAttribute("aria-checked", String(selected));
    button.title = entry.style
      ? `Write in the style of “${entry.label}”`
      : "No prime: the model's own hand";
    if (entry.style) {
      const picture = document.createElement("div");
      picture.className = "thumbnail";
      picture.innerHTML = toSvg([entry.style], page.scale.lineHeight);
      button.append(picture);
    }
    const label = document.createElement("span");
    label.textContent = entry.label;
    button.append(label);
    button.onclick = () => {
      page.style = entry.style ? { ...entry.style, key: entry.key } : null;
      renderStyleList();
    };
    list.append(button);
  }
}

function selectMine(mine) {
  page.mine = mine;
  page.style = { ...mine, key: "mine" };
  renderStyleList();
}

// The pad's line as a prime with its text, or {error}.
function padLine() {
  const text = $("pad-text").value;
  if (!page.meta) return { error: "The model is still loading." };
  if (!page.pad.runs.length) return { error: "Write a line on the pad first." };
  const problem = textError(text, alphabet(), { what: "What you wrote", allowNewlines: false });
  if (problem) return { error: `${problem}.` };
  const strokes = padToStrokes(page.pad.runs, page.pad.bandPx, page.scale);
  const error = primeError(strokes, "Your line");
  if (error) return { error: `${error}.` };
  if ([...text].length + 2 > page.textLength) {
    return {
      error:
        `What you wrote has ${[...text].length} characters; with a line to write the sampler ` +
        `reads at most ${page.textLength}: write a shorter line.`,
    };
  }
  return { text, strokes, source: "the pad" };
}

function updatePadMessage() {
  const count = page.pad ? page.pad.pointCount : 0;
  const strokes = page.pad ? page.pad.runs.length : 0;
  $("pad-message").textContent = count
    ? `${strokes} stroke${strokes === 1 ? "" : "s"}, ${count} points written.`
    : "";
}

function useOwnLine() {
  const line = padLine();
  if (line.error) {
    $("pad-message").textContent = line.error;
    return;
  }
  selectMine(line);
  const points = line.strokes.length / 3;
  $("pad-message").textContent =
    `Your line (${points} points, “${line.text}”) is the style now: press Write.`;
}

function saveOwnLine() {
  const line = padLine();
  if (line.error) {
    $("pad-message").textContent = line.error;
    return;
  }
  download(new Blob([toStrokeJson([line])], { type: "application/json" }), "my-line.json");
  $("pad-message").textContent =
    "Saved my-line.json: python -m handwriting write … --prime my-line.json writes in it.";
}

async function loadOwnLine(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  const say = (text) => {
    $("pad-message").textContent = text;
  };
  if (!page.meta) return say("The model is still loading.");
  if (file.size > MAX_JSON_BYTES) {
    return say(`${file.name}: larger than ${MAX_JSON_BYTES >> 20} MiB; a line is far smaller.`);
  }
  let line;
  try {
    line = parseStrokeJson(await file.text(), file.name);
  } catch (error) {
    return say(error.message);
  }
  const text = line.text ?? $("pad-text").value;
  if (line.text === null && !text) {
    return say(
      `${file.name}: holds no text; type what the line says in “What you wrote”, then ` +
        "load it again.",
    );
  }
  const problem = textError(text, alphabet(), {
    what: `${file.name}: its text`,
    allowNewlines: false,
  });
  if (problem) return say(`${problem}.`);
  const error = primeError(line.strokes, file.name);
  if (error) return say(`${error}.`);
  if ([...text].length + 2 > page.textLength) {
    return say(
      `${file.name}: its text has ${[...text].length} characters; the sampler reads at ` +
        `most ${page.textLength} with a line to write.`,
    );
  }
  $("pad-text").value = text;
  selectMine({ text, strokes: line.strokes, source: file.name });
  const points = line.strokes.length / 3;
  say(`Loaded ${file.name} (${points} points, “${text}”): it is the style now.`);
}

start().catch((error) => fail(error.message));
