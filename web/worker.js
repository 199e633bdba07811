// The page's sampler: the exported TFLite step (export/tflite.py) run by LiteRT.js in a Web
// Worker, so the page stays responsive while the points come.
//
// It does what export/litert_runner.py does, step for step: the text is set once per line as
// a one-hot `(1, L, V)` with its mask; the state starts at zeros and is fed back; the point
// starts at the start point of the metadata (or, with a prime, the network first reads the
// prime's points and goes on from its last one, the text being `prime text + " " + line`, as
// handwriting/sample.py does); the draws of line i come from numpy.random.default_rng([seed, i])
// (draws.js); a line stops at the first step whose `passed` is 1, or when its budget
// ceil(points_per_char * (characters + 1)) is spent; the points are denormalised (float64,
// rounded once to float32), the start point (0, 0, 0) goes first on an unprimed line and the
// last point gets eos = 1.
//
// A classic worker (LiteRT.js loads its runtime's glue with importScripts). Messages in:
//   {type: "load", modelUrl}                                    -> {type: "ready", meta, ...}
//   {type: "write", job, lines, bias, seed, int8, prime}        -> "points"*, "line", "done"
//   {type: "cancel", job}
// prime: null or {text, strokes: Float32Array of raw (dx, dy, eos), 3 per point}.
// Errors come back as {type: "error", job, message}. Every tensor the worker makes or gets
// from the step is freed (`release`): LiteRT.js' wasm memory is not garbage-collected.

"use strict";

importScripts("draws.js", "vendor/litert.js");

const SIGNATURE = "step";
const FIRST_CHAR_ID = 2; // 0 pads, 1 is the unknown character (export/litert_runner.py)
const METADATA_VERSION = 2; // the sampler format this worker reads
const INPUT_NAMES = ["point", "state", "text", "text_mask", "draws", "bias"];
// Points are posted to the page at most this often (ms): 25 pictures a second.
const POST_INTERVAL_MS = 40;
// The loop lets messages in (a cancel) at most this often (ms).
const YIELD_INTERVAL_MS = 50;
// Lines written once after a step is compiled, so that the person's first line is not
// written by cold code: the first second or two of steps run several times slower (V8 and
// WebAssembly tiering up; measured on a busy 2-core machine: 590, 860, then 1,390 points
// per second over three lines). Unposted lines are written for this long.
const WARM_UP_SECONDS = 2;
const WARM_UP_TEXT = "warming up the sampler";
const WARM_UP_CHUNK = 200; // steps per warm-up line: the clock is read between lines

const sampler = {
  meta: null,
  modelUrl: null,
  runners: {}, // "float32" | "int8" -> the compiled step and its shapes (`compiled`)
  ids: null, // char -> alphabet id
};
let cancelled = new Set();

self.onmessage = (event) => {
  const message = event.data;
  if (message.type === "cancel") {
    cancelled.add(message.job);
    return;
  }
  const handle = { load, write }[message.type];
  if (!handle) {
    self.postMessage({
      type: "error",
      job: message.job,
      message: `unknown request ${message.type}`,
    });
    return;
  }
  handle(message).catch((error) => {
    self.postMessage({ type: "error", job: message.job, message: String(error.message || error) });
  });
};

// A macrotask boundary, so that queued messages (a cancel) are delivered.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()();
function letMessagesIn() {
  return new Promise((resolve) => {
    waiting.push(resolve);
    channel.port2.postMessage(0);
  });
}

async function load({ modelUrl }) {
  const started = performance.now();
  sampler.modelUrl = modelUrl;
  const response = await fetch(new URL("sampler.json", modelUrl));
  if (!response.ok) {
    throw new Error(
      `${response.url}: ${response.status} ${response.statusText}; the page needs the ` +
        "export beside it in model/ (python -m handwriting serve makes it)",
    );
  }
  const meta = await response.json();
  if (meta.version !== METADATA_VERSION) {
    throw new Error(
      `${response.url}: sampler format version ${meta.version}; the page reads version ` +
        `${METADATA_VERSION}: export the model again with python -m export`,
    );
  }
  sampler.meta = meta;
  sampler.ids = new Map([...meta.alphabet.chars].map((c, i) => [c, i + FIRST_CHAR_ID]));
  const wasmDir = new URL("vendor/wasm/", self.location.href).href;
  self.Module = { locateFile: (name) => wasmDir + name };
  const liteRt = await LiteRT.loadLiteRt(wasmDir);
  sampler.wasm = liteRt.liteRtWasm;
  await compiled("float32");
  self.postMessage({
    type: "ready",
    meta,
    textLength: sampler.runners.float32.textLength,
    loadSeconds: (performance.now() - started) / 1000,
  });
}

// The step of one variant ("float32", "int8"), compiled on first use.
async function compiled(variant) {
  if (sampler.runners[variant]) return sampler.runners[variant];
  const url = new URL(`sampler_${variant}.tflite`, sampler.modelUrl).href;
  let model;
  try {
    model = await LiteRT.loadAndCompile(url, { accelerator: "wasm" });
  } catch (error) {
    throw new Error(`${url}: LiteRT.js cannot load it (${error.message || error})`);
  }
  const runner = model.signatures[SIGNATURE];
  if (!runner) throw new Error(`${url}: no signature "${SIGNATURE}"; not a handwriting sampler`);
  const inputs = runner.getInputDetails();
  const outputs = runner.getOutputDetails();
  for (const detail of outputs) {
    if (!["float32", "int32", "uint8"].includes(detail.dtype)) {
      throw new Error(
        `${url}: its output ${detail.name} is ${detail.dtype}, which LiteRT.js cannot read; ` +
          "export the model again with python -m export",
      );
    }
  }
  const byName = Object.fromEntries(inputs.map((d) => [d.name, d]));
  const missing = INPUT_NAMES.filter((name) => !(name in byName));
  if (missing.length) throw new Error(`${url}: not a handwriting sampler (no ${missing})`);
  const [, textLength, alphabetSize] = byName.text.shape;
  const stateWidth = byName.state.shape[1];
  const meta = sampler.meta;
  if (meta.alphabet.chars.length + FIRST_CHAR_ID !== alphabetSize) {
    throw new Error(`${url}: reads ${alphabetSize} ids; sampler.json is of another export`);
  }
  if (meta.state_widths.reduce((a, b) => a + b, 0) !== stateWidth) {
    throw new Error(`${url}: its state is ${stateWidth} wide; sampler.json is of another export`);
  }
  const entry = {
    runner,
    model,
    order: inputs.map((d) => d.name),
    outputNames: outputs.map((d) => d.name),
    textLength,
    alphabetSize,
    stateWidth,
    direct: null,
  };
  // One step through run(), which checks the inputs: tensors made as every step makes them.
  const checked = {
    point: [1, 3],
    state: [1, stateWidth],
    text: [1, textLength, alphabetSize],
    text_mask: [1, textLength],
    draws: [1, 4],
    bias: [1],
  };
  const probe = Object.fromEntries(
    Object.entries(checked).map(([name, shape]) => [
      name,
      new LiteRT.Tensor(new Float32Array(shape.reduce((a, b) => a * b)), shape),
    ]),
  );
  try {
    const results = await step(entry, probe);
    for (const name in results) release(results[name]);
  } finally {
    for (const name in probe) release(probe[name]);
  }
  entry.direct = directPath(runner, sampler.wasm);
  const started = performance.now();
  for (let seed = 0; performance.now() - started < WARM_UP_SECONDS * 1000; seed++) {
    await writeLine(entry, null, 0, WARM_UP_TEXT, 0, seed, null, WARM_UP_CHUNK);
  }
  sampler.runners[variant] = entry;
  return entry;
}

// LiteRT.js' run() checks the type and the buffer of every input on every call, and every
// Tensor made or read costs a few calls into its wasm runtime: on a demo-size step that was
// over half of the page's time (measured: 540 us a step through run(), 290 us calling the
// compiled model itself). The loop feeds the step the tensors it makes, as `compiled` made
// them for one checked run(), or the step's own outputs; so after that run it works on their
// tensor buffers as LiteRT.js itself does (the compiled model's run, lock, the wasm heap,
// unlock), where LiteRT.js (pinned at 2.5.3) has them, and through run() and Tensors
// otherwise. Returns null, or {run(buffers), read(buffer, bytes), write(buffer, array)}.
function directPath(runner, wasm) {
  const compiledModel = runner.liteRtCompiledModel;
  const modes = wasm?.LiteRtTensorBufferLockMode;
  if (
    typeof compiledModel?.run !== "function" ||
    !Number.isInteger(runner.signatureIndex) ||
    !modes?.READ ||
    !modes?.WRITE ||
    !(wasm.HEAPU8 instanceof Uint8Array)
  ) {
    return null;
  }
  return {
    run: (buffers) => compiledModel.run(runner.signatureIndex, buffers),
    // A copy of the first `bytes` bytes of a tensor buffer.
    read(buffer, bytes) {
      const at = buffer.lock(modes.READ);
      try {
        return wasm.HEAPU8.slice(at, at + bytes);
      } finally {
        buffer.unlock();
      }
    },
    write(buffer, array) {
      const at = buffer.lock(modes.WRITE);
      try {
        wasm.HEAPU8.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), at);
      } finally {
        buffer.unlock();
      }
    },
  };
}

// Runs the step on named inputs (Tensors, or outputs of an earlier step); returns the outputs
// by name, each for the caller to `release`: Tensors through run(), the compiled model's
// tensor buffers on the direct path.
async function step(entry, inputs) {
  const args = entry.order.map((name) => inputs[name]);
  const outputs = entry.direct
    ? await entry.direct.run(
        args.map((x) => (x instanceof LiteRT.Tensor ? x.liteRtTensorBuffer : x)),
      )
    : await entry.runner.run(args);
  const byName = {};
  entry.outputNames.forEach((name, i) => {
    byName[name] = outputs[i];
  });
  return byName;
}

// The step's `passed` (0 or 1) and `point` (3 floats) of one step's outputs.
function readPassed(entry, output) {
  return entry.direct ? entry.direct.read(output, 1)[0] : output.toTypedArray()[0];
}

function readPoint(entry, output) {
  return entry.direct
    ? new Float32Array(entry.direct.read(output, 12).buffer)
    : output.toTypedArray();
}

// Frees a Tensor or a tensor buffer of the direct path (wasm memory is not collected).
function release(value) {
  if (!value) return;
  if (value instanceof LiteRT.Tensor) {
    if (!value.deleted) value.delete();
  } else if (!value.isDeleted()) {
    value.delete();
  }
}

function encode(text, textLength) {
  const ids = [];
  for (const char of text) {
    const id = sampler.ids.get(char);
    if (id === undefined) throw new Error(`${JSON.stringify(char)} is not in the model's alphabet`);
    ids.push(id);
  }
  if (ids.length > textLength) {
    throw new Error(
      `a line with its prime holds ${ids.length} characters; the sampler reads at most ` +
        `${textLength}: write a shorter line or a shorter prime`,
    );
  }
  return ids;
}

function normalize(strokes) {
  const { offset_mean: mean, offset_std: std } = sampler.meta.normalization;
  const out = new Float32Array(strokes.length);
  for (let i = 0; i < strokes.length; i += 3) {
    out[i] = (strokes[i] - mean[0]) / std[0];
    out[i + 1] = (strokes[i + 1] - mean[1]) / std[1];
    out[i + 2] = strokes[i + 2];
  }
  return out;
}

function denormalizePoint(point, out, offset) {
  const { offset_mean: mean, offset_std: std } = sampler.meta.normalization;
  out[offset] = Math.fround(point[0] * std[0] + mean[0]);
  out[offset + 1] = Math.fround(point[1] * std[1] + mean[1]);
  out[offset + 2] = point[2];
}

async function write({ job, lines, bias, seed, int8, prime }) {
  cancelled = new Set([...cancelled].filter((j) => j >= job));
  const entry = await compiled(int8 ? "int8" : "float32");
  let points = 0;
  let seconds = 0;
  for (let index = 0; index < lines.length; index++) {
    const started = performance.now();
    const result = await writeLine(entry, job, index, lines[index], bias, seed, prime);
    if (result === null) {
      self.postMessage({ type: "cancelled", job });
      return;
    }
    seconds += (performance.now() - started) / 1000;
    points += result.steps;
    self.postMessage({ type: "line", job, line: index, ...result });
  }
  self.postMessage({ type: "done", job, points, seconds });
}

// One line; returns {strokes, finished, steps} or null when cancelled. `job` null: a line
// of nobody's (the warm-up), whose points are not posted; `limit`: the most steps to run.
async function writeLine(entry, job, index, line, bias, seed, prime, limit = Infinity) {
  const { Tensor } = LiteRT;
  const meta = sampler.meta;
  const full = prime ? `${prime.text} ${line}` : line;
  const ids = encode(full, entry.textLength);
  const { textLength: length, alphabetSize: size, stateWidth } = entry;
  const oneHot = new Float32Array(length * size);
  const mask = new Float32Array(length);
  ids.forEach((id, u) => {
    oneHot[u * size + id] = 1;
    mask[u] = 1;
  });
  const budget = Math.ceil(meta.points_per_char * ([...line].length + 1));
  const steps = Math.min(budget + 1, limit);
  const draws = HandwritingDraws.lineDraws(seed, index, steps);
  const keep = [
    new Tensor(oneHot, [1, length, size]),
    new Tensor(mask, [1, length]),
    new Tensor(new Float32Array([bias]), [1]),
    new Tensor(new Float32Array(4), [1, 4]), // the draws, rewritten each step (direct path)
  ];
  const [text, textMask, biasTensor, lineDraws] = keep;
  let state = new Tensor(new Float32Array(stateWidth), [1, stateWidth]);
  let point;
  const drawn = new Float32Array(steps * 3); // denormalised points
  let count = 0;
  let finished = false;
  try {
    // Teacher forcing over the prime: the network reads its points; the last one is read by
    // the first step of the loop below (as the start point is without a prime).
    const read = prime ? normalize(prime.strokes) : new Float32Array(meta.start_point);
    const still = new Float32Array(4); // draws of the prime's steps: their points are unused
    for (let n = 0; n + 3 < read.length; n += 3) {
      const pointTensor = new Tensor(read.slice(n, n + 3), [1, 3]);
      const drawsTensor = new Tensor(still, [1, 4]);
      const outputs = await step(entry, {
        point: pointTensor,
        state,
        text,
        text_mask: textMask,
        draws: drawsTensor,
        bias: biasTensor,
      });
      release(pointTensor);
      release(drawsTensor);
      release(state);
      state = outputs.state;
      for (const name in outputs) if (name !== "state") release(outputs[name]);
    }
    point = new Tensor(read.slice(read.length - 3), [1, 3]);
    let lastPost = performance.now();
    let lastYield = lastPost;
    let posted = 0;
    for (let t = 0; t < steps; t++) {
      const stepDraws = draws.subarray(4 * t, 4 * t + 4);
      let drawsTensor = lineDraws;
      if (entry.direct) entry.direct.write(lineDraws.liteRtTensorBuffer, stepDraws);
      else drawsTensor = new Tensor(stepDraws.slice(), [1, 4]);
      const outputs = await step(entry, {
        point,
        state,
        text,
        text_mask: textMask,
        draws: drawsTensor,
        bias: biasTensor,
      });
      if (drawsTensor !== lineDraws) release(drawsTensor);
      release(outputs.phi);
      release(outputs.phi_end);
      release(outputs.head);
      const passed = readPassed(entry, outputs.passed) !== 0;
      release(outputs.passed);
      if (passed || t >= budget) {
        release(outputs.point);
        release(outputs.state);
        finished = passed;
        break;
      }
      denormalizePoint(readPoint(entry, outputs.point), drawn, 3 * count);
      count += 1;
      release(point);
      release(state);
      point = outputs.point;
      state = outputs.state;
      const now = performance.now();
      if (job !== null && now - lastPost >= POST_INTERVAL_MS) {
        self.postMessage({
          type: "points",
          job,
          line: index,
          points: drawn.slice(3 * posted, 3 * count),
        });
        posted = count;
        lastPost = now;
      }
      if (now - lastYield >= YIELD_INTERVAL_MS) {
        await letMessagesIn();
        lastYield = performance.now();
        if (cancelled.has(job)) return null;
      }
    }
  } finally {
    for (const tensor of keep) release(tensor);
    release(state);
    release(point);
  }
  // finish_line: the start point first on an unprimed line, eos = 1 on the last point.
  const origin = prime ? 0 : 1;
  const strokes = new Float32Array((count + origin) * 3);
  strokes.set(drawn.subarray(0, 3 * count), 3 * origin);
  if (strokes.length) strokes[strokes.length - 1] = 1;
  return { strokes, finished, steps: count };
}
