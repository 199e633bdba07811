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
// The same step with only the outputs read here (point, state, passed): LiteRT.js makes a
// buffer for every output on every call, and three cost about 30 us a step less than six.
// Exports made before it have only `step`, which works the same.
const WRITE_SIGNATURE = "write";
const OUTPUT_NAMES = ["point", "state", "passed"];
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
  const runner = model.signatures[WRITE_SIGNATURE] || model.signatures[SIGNATURE];
  if (!runner) throw new Error(`${url}: no signature "${SIGNATURE}"; not a handwriting sampler`);
  const inputs = runner.getInputDetails();
  const outputs = runner.getOutputDetails();
  const lacking = OUTPUT_NAMES.filter((name) => !outputs.some((d) => d.name === name));
  if (lacking.length) throw new Error(`${url}: not a handwriting sampler (no ${lacking})`);
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
    const results = await runner.run(probe);
    for (const name in results) release(results[name]);
    entry.direct = directPath(entry, sampler.wasm, probe);
  } finally {
    for (const name in probe) release(probe[name]);
  }
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
// unlock), where LiteRT.js (pinned at 2.5.3) has them and its run returns the outputs at once
// (not a promise), and through run() and Tensors otherwise. `probe`: the checked run's
// Tensors. Returns null, or {run(buffers), readByte(buffer), read(buffer, out),
// write(buffer, bytes, from, count)}: byte copies, no JavaScript objects made.
function directPath(entry, wasm, probe) {
  const compiledModel = entry.runner.liteRtCompiledModel;
  const signature = entry.runner.signatureIndex;
  const modes = wasm?.LiteRtTensorBufferLockMode;
  if (
    typeof compiledModel?.run !== "function" ||
    !Number.isInteger(signature) ||
    !modes?.READ ||
    !modes?.WRITE ||
    !(wasm.HEAPU8 instanceof Uint8Array)
  ) {
    return null;
  }
  const outputs = compiledModel.run(
    signature,
    entry.order.map((name) => probe[name].liteRtTensorBuffer),
  );
  if (!Array.isArray(outputs)) {
    Promise.resolve(outputs).then((buffers) => buffers.forEach(release), () => {});
    return null;
  }
  outputs.forEach(release);
  const { READ, WRITE } = modes;
  return {
    run: (buffers) => compiledModel.run(signature, buffers),
    readByte(buffer) {
      const at = buffer.lock(READ);
      const value = wasm.HEAPU8[at];
      buffer.unlock();
      return value;
    },
    // Copies the buffer's first `out.length` bytes into the Uint8Array `out`.
    read(buffer, out) {
      const at = buffer.lock(READ);
      const heap = wasm.HEAPU8;
      for (let i = 0; i < out.length; i++) out[i] = heap[at + i];
      buffer.unlock();
    },
    // Copies `count` bytes of the Uint8Array `bytes` from `from` on into the buffer.
    write(buffer, bytes, from, count) {
      const at = buffer.lock(WRITE);
      const heap = wasm.HEAPU8;
      for (let i = 0; i < count; i++) heap[at + i] = bytes[from + i];
      buffer.unlock();
    },
  };
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

// The step of one line, fed back as export/litert_runner.py feeds it: the text, its mask and
// the bias are set once; `step(draws, t, point)` runs step t on the point and the state of
// the step before (the start point, a point given to `setPoint`, and zeros at first), with
// the four draws of step t, writes the step's point into the Float32Array `point` and
// returns whether its `passed` is 1; the step's point and state become the next step's
// inputs. `release()` frees what it holds. On the direct path a step makes no JavaScript
// objects but the outputs' handles, and `step` returns its answer, not a promise.
function lineSteps(entry, oneHot, mask, bias, start) {
  const { Tensor } = LiteRT;
  const { textLength: length, alphabetSize: size, stateWidth } = entry;
  const made = {
    text: new Tensor(oneHot, [1, length, size]),
    text_mask: new Tensor(mask, [1, length]),
    bias: new Tensor(new Float32Array([bias]), [1]),
    draws: new Tensor(new Float32Array(4), [1, 4]), // rewritten each step (direct path)
    point: new Tensor(start, [1, 3]),
    state: new Tensor(new Float32Array(stateWidth), [1, stateWidth]),
  };
  return entry.direct ? directSteps(entry, made) : tensorSteps(entry, made);
}

function directSteps(entry, made) {
  const { direct } = entry;
  const args = entry.order.map((name) => made[name].liteRtTensorBuffer);
  const at = (names, name) => names.indexOf(name);
  const [pointIn, stateIn] = ["point", "state"].map((name) => at(entry.order, name));
  const [pointOut, stateOut, passedOut] = OUTPUT_NAMES.map((name) =>
    at(entry.outputNames, name),
  );
  const read = [pointOut, stateOut, passedOut];
  const unread = entry.outputNames.map((_, i) => i).filter((i) => !read.includes(i));
  const drawsBuffer = args[at(entry.order, "draws")];
  const pointBytes = new Float32Array(3);
  const pointView = new Uint8Array(pointBytes.buffer);
  // The step's point and state inputs: the made tensors' buffers, then the outputs of the
  // step before; owned here from now on (their Tensors are not used again).
  let point = args[pointIn];
  let state = args[stateIn];
  return {
    setPoint(values) {
      direct.write(point, new Uint8Array(values.buffer, values.byteOffset, 12), 0, 12);
    },
    step(drawBytes, t, out) {
      direct.write(drawsBuffer, drawBytes, 16 * t, 16);
      args[pointIn] = point;
      args[stateIn] = state;
      const outputs = direct.run(args);
      for (const i of unread) outputs[i].delete();
      const passed = direct.readByte(outputs[passedOut]) !== 0;
      outputs[passedOut].delete();
      direct.read(outputs[pointOut], pointView);
      out.set(pointBytes);
      point.delete();
      state.delete();
      point = outputs[pointOut];
      state = outputs[stateOut];
      return passed;
    },
    release() {
      for (const name of ["text", "text_mask", "bias", "draws"]) release(made[name]);
      release(point);
      release(state);
    },
  };
}

// Through LiteRT.js' public API (Tensors and run()): where the direct path is not available.
function tensorSteps(entry, made) {
  const { Tensor } = LiteRT;
  const inputs = { ...made };
  return {
    setPoint(values) {
      release(inputs.point);
      inputs.point = new Tensor(values.slice(), [1, 3]);
    },
    async step(drawBytes, t, out) {
      const draws = new Float32Array(drawBytes.buffer, drawBytes.byteOffset + 16 * t, 4);
      release(inputs.draws);
      inputs.draws = new Tensor(draws.slice(), [1, 4]);
      const outputs = await entry.runner.run(inputs);
      const passed = outputs.passed.toTypedArray()[0] !== 0;
      out.set(outputs.point.toTypedArray());
      for (const name in outputs) {
        if (name !== "point" && name !== "state") release(outputs[name]);
      }
      release(inputs.point);
      release(inputs.state);
      inputs.point = outputs.point;
      inputs.state = outputs.state;
      return passed;
    },
    release() {
      for (const name in inputs) release(inputs[name]);
    },
  };
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
    self.postMessage({ type: "line", job, line: index, ...result }, [result.strokes.buffer]);
  }
  self.postMessage({ type: "done", job, points, seconds });
}

// One line; returns {strokes, finished, steps} or null when cancelled. `job` null: a line
// of nobody's (the warm-up), whose points are not posted; `limit`: the most steps to run.
async function writeLine(entry, job, index, line, bias, seed, prime, limit = Infinity) {
  const meta = sampler.meta;
  const full = prime ? `${prime.text} ${line}` : line;
  const ids = encode(full, entry.textLength);
  const { textLength: length, alphabetSize: size } = entry;
  const oneHot = new Float32Array(length * size);
  const mask = new Float32Array(length);
  ids.forEach((id, u) => {
    oneHot[u * size + id] = 1;
    mask[u] = 1;
  });
  const budget = Math.ceil(meta.points_per_char * ([...line].length + 1));
  const steps = Math.min(budget + 1, limit);
  const draws = HandwritingDraws.lineDraws(seed, index, steps);
  const drawBytes = new Uint8Array(draws.buffer, draws.byteOffset, draws.byteLength);
  // Teacher forcing over the prime: the network reads its points; the last one is read by
  // the first step of the loop below (as the start point is without a prime).
  const read = prime ? normalize(prime.strokes) : new Float32Array(meta.start_point);
  const stepper = lineSteps(entry, oneHot, mask, bias, read.subarray(0, 3));
  const point = new Float32Array(3); // the step's point, normalised
  const drawn = new Float32Array(steps * 3); // denormalised points
  let count = 0;
  let finished = false;
  try {
    const still = new Uint8Array(16); // draws of the prime's steps: their points are unused
    for (let n = 0; n + 3 < read.length; n += 3) {
      if (n > 0) stepper.setPoint(read.subarray(n, n + 3));
      await stepper.step(still, 0, point);
    }
    if (read.length > 3) stepper.setPoint(read.subarray(read.length - 3));
    let lastPost = performance.now();
    let lastYield = lastPost;
    let posted = 0;
    for (let t = 0; t < steps; t++) {
      // The direct path's step returns its answer: no promise to wait for.
      let passed = stepper.step(drawBytes, t, point);
      if (!entry.direct) passed = await passed;
      if (passed || t >= budget) {
        finished = passed;
        break;
      }
      denormalizePoint(point, drawn, 3 * count);
      count += 1;
      const now = performance.now();
      if (job !== null && now - lastPost >= POST_INTERVAL_MS) {
        const points = drawn.slice(3 * posted, 3 * count);
        self.postMessage({ type: "points", job, line: index, points }, [points.buffer]);
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
    stepper.release();
  }
  // finish_line: the start point first on an unprimed line, eos = 1 on the last point.
  const origin = prime ? 0 : 1;
  const strokes = new Float32Array((count + origin) * 3);
  strokes.set(drawn.subarray(0, 3 * count), 3 * origin);
  if (strokes.length) strokes[strokes.length - 1] = 1;
  return { strokes, finished, steps: count };
}
