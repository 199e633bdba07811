// Strokes in the page: the project's stroke JSON (handwriting/strokes.py), a line drawn on
// the pad turned into a prime, and pictures (SVG, PNG) of written lines.
//
// Strokes are Float32Arrays of (dx, dy, eos) triples in the training data's units, y up,
// eos = 1 on the last point of each stroke, the first point an offset from the origin.

// Format tag of the stroke JSON and the prime limits of handwriting/strokes.py.
export const STROKES_FORMAT = "handwriting-strokes";
export const MAX_PRIME_POINTS = 4000;
export const MIN_PRIME_POINTS = 2;
// Largest stroke JSON the page reads (a line of handwriting is far smaller).
export const MAX_JSON_BYTES = 64 * 1024 * 1024;
// Points per character of handwriting in IAM-OnDB (handwriting/sample.py): the pad's
// resampling step when the model carries no styles to measure.
const POINTS_PER_CHAR = 20;

export class StrokeError extends Error {}

// ---------------------------------------------------------------------------------------------
// The stroke JSON

// `{"format": "handwriting-strokes", "version": 1, "lines": [{"text", "strokes"}, ...]}`,
// offsets rounded to 4 decimals as handwriting/strokes.py `save_strokes_json` writes them.
export function toStrokeJson(lines) {
  const round = (v) => Math.round(v * 1e4) / 1e4;
  const obj = {
    format: STROKES_FORMAT,
    version: 1,
    lines: lines.map(({ text, strokes }) => {
      const rows = [];
      for (let i = 0; i < strokes.length; i += 3) {
        rows.push([round(strokes[i]), round(strokes[i + 1]), strokes[i + 2] > 0.5 ? 1 : 0]);
      }
      return { text, strokes: rows };
    }),
  };
  return `${JSON.stringify(obj)}\n`;
}

// The first line of a stroke JSON file (as `--prime` reads it): {strokes, text or null}.
// `name` is the file's name, said in the errors.
export function parseStrokeJson(content, name) {
  let obj;
  try {
    obj = JSON.parse(content);
  } catch (error) {
    throw new StrokeError(`${name}: not valid JSON (${error.message})`);
  }
  if (obj && typeof obj === "object" && !Array.isArray(obj) && "lines" in obj) {
    if (!Array.isArray(obj.lines) || !obj.lines.length) {
      throw new StrokeError(`${name}: \`lines\` must be a non-empty list`);
    }
    obj = obj.lines[0];
  }
  if (!obj || typeof obj !== "object" || Array.isArray(obj) || !("strokes" in obj)) {
    throw new StrokeError(
      `${name}: expected an object with \`strokes\` ([[dx, dy, eos], ...]) and \`text\``,
    );
  }
  const rows = obj.strokes;
  if (!Array.isArray(rows) || rows.some((r) => !Array.isArray(r) || r.length !== 3)) {
    throw new StrokeError(`${name}: \`strokes\` must be a list of [dx, dy, eos] triples`);
  }
  const strokes = new Float32Array(rows.length * 3);
  rows.forEach((row, i) => {
    row.forEach((value, j) => {
      if (typeof value !== "number") {
        throw new StrokeError(`${name}: point ${i} holds ${JSON.stringify(value)}, not a number`);
      }
      strokes[3 * i + j] = value;
    });
  });
  const text = obj.text ?? null;
  if (text !== null && typeof text !== "string") {
    throw new StrokeError(`${name}: \`text\` must be a string`);
  }
  return { strokes, text };
}

// Why `strokes` cannot be a prime (handwriting/strokes.py `check_prime`), or null.
export function primeError(strokes, where = "the prime") {
  const count = strokes.length / 3;
  if (count < MIN_PRIME_POINTS) {
    const points = `${count} point${count === 1 ? "" : "s"}`;
    return `${where} has ${points}; a prime needs at least ${MIN_PRIME_POINTS}: write a few words`;
  }
  if (count > MAX_PRIME_POINTS) {
    return (
      `${where} has ${count} points; a prime is one line (at most ${MAX_PRIME_POINTS} ` +
      "points): write less"
    );
  }
  for (let i = 0; i < count; i++) {
    const [dx, dy, eos] = strokes.subarray(3 * i, 3 * i + 3);
    if (!Number.isFinite(dx) || !Number.isFinite(dy)) {
      return `${where}: point ${i} holds NaN or infinite values`;
    }
    if (eos !== 0 && eos !== 1) return `${where}: eos values must be 0 or 1 (point ${i})`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// A line drawn on the pad -> a prime in the data's units

// The sizes a drawn line is brought to, measured on the model's styles (real lines of its
// data): the median height of a line's ink and the median step between two points of a
// stroke. Without styles, from the offset statistics: a line about 10 standard deviations of
// dy high (the demo data: 10 * 20 = 200 vs a median of 210 measured), points at the width of
// a character (mean dx per point times POINTS_PER_CHAR) over POINTS_PER_CHAR.
export function dataScale(styles, normalization) {
  const heights = [];
  const steps = [];
  for (const { strokes } of styles) {
    let y = 0;
    let low = 0;
    let high = 0;
    for (let i = 0; i < strokes.length; i += 3) {
      y += strokes[i + 1];
      low = Math.min(low, y);
      high = Math.max(high, y);
      const penDown = i === 0 || strokes[i - 1] < 0.5;
      if (penDown) steps.push(Math.hypot(strokes[i], strokes[i + 1]));
    }
    heights.push(high - low);
  }
  if (heights.length) return { lineHeight: median(heights), step: median(steps) };
  const [meanDx] = normalization.offset_mean;
  const [, stdDy] = normalization.offset_std;
  return { lineHeight: 10 * stdDy, step: Math.abs(meanDx) || stdDy / 2 };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// The strokes of a line drawn on the pad: pen-down runs of {x, y, t} (CSS pixels, y down) ->
// Float32Array of (dx, dy, eos) in the data's units, y up.
//
// The same cleaning as a prime file (handwriting/iam_xml.py `to_stroke_array`): repeated
// points dropped, the first point at the origin, y flipped, offsets; and what a screen needs
// besides: the pad's writing band (`bandPx`, the height a line's ink takes on the pad) is
// scaled to the data's line height, and each stroke is resampled along its length at the
// data's step between points, so that a fast mouse and a slow pen give the same density.
export function padToStrokes(runs, bandPx, scale) {
  const unitsPerPx = scale.lineHeight / bandPx;
  const points = []; // [x, y, end of stroke] in data units, y up
  for (const run of runs) {
    const resampled = resample(
      run.map((p) => [p.x * unitsPerPx, -p.y * unitsPerPx]),
      scale.step,
    );
    resampled.forEach((p, i) => points.push([p[0], p[1], i === resampled.length - 1 ? 1 : 0]));
  }
  const kept = points.filter(
    (p, i) =>
      i === 0 || points[i - 1][2] === 1 || p[0] !== points[i - 1][0] || p[1] !== points[i - 1][1],
  );
  const strokes = new Float32Array(kept.length * 3);
  kept.forEach((p, i) => {
    const [x0, y0] = i ? kept[i - 1] : kept[0];
    strokes.set([p[0] - x0, p[1] - y0, p[2]], 3 * i);
  });
  return strokes;
}

// Points along a polyline every `step` of its length, its first and last points kept.
function resample(polyline, step) {
  if (polyline.length < 2) return polyline.slice();
  const out = [polyline[0]];
  let carried = 0; // length walked since the last point put out
  for (let i = 1; i < polyline.length; i++) {
    let [x0, y0] = polyline[i - 1];
    const [x1, y1] = polyline[i];
    let segment = Math.hypot(x1 - x0, y1 - y0);
    while (carried + segment >= step) {
      const f = (step - carried) / segment;
      x0 += f * (x1 - x0);
      y0 += f * (y1 - y0);
      out.push([x0, y0]);
      segment = Math.hypot(x1 - x0, y1 - y0);
      carried = 0;
    }
    carried += segment;
  }
  const last = polyline[polyline.length - 1];
  const end = out[out.length - 1];
  if (Math.hypot(last[0] - end[0], last[1] - end[1]) > step / 4) out.push(last);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pictures

// The pen-down runs of a line as absolute positions, y down: [[x, y], ...] per stroke.
export function polylines(strokes) {
  const runs = [];
  let run = [];
  let x = 0;
  let y = 0;
  for (let i = 0; i < strokes.length; i += 3) {
    x += strokes[i];
    y -= strokes[i + 1];
    run.push([x, y]);
    if (strokes[i + 2] > 0.5) {
      runs.push(run);
      run = [];
    }
  }
  if (run.length) runs.push(run);
  return runs;
}

// The layout of written lines, shared by the finished picture (`toSvg`) and the one drawn
// while the points come (`LiveSvg`), so that the two are the same: line i's start point at
// (0, i * pitch), y down, the pen and the spacing in proportion to the data's line height.
export function layout(lineHeight) {
  const pen = lineHeight * 0.035;
  return { pen, pitch: lineHeight * 1.6, margin: pen * 4 };
}

// The box [left, top, right, bottom] around `lineCount` lines whose ink spans `bounds`
// ([left, top, right, bottom] or null), with the layout's margin.
function pictureBox(bounds, lineCount, { pitch, margin }) {
  const [left, top, right, bottom] = bounds || [0, 0, 0, 0];
  return [
    Math.min(left, 0) - margin,
    Math.min(top, -pitch / 2) - margin,
    Math.max(right, pitch) + margin,
    Math.max(bottom, (lineCount - 0.5) * pitch) + margin,
  ];
}

function svgOpen(box, pen) {
  const [left, top, right, bottom] = box;
  const width = right - left;
  const height = bottom - top;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${fmt(width)}" ` +
    `height="${fmt(height)}" viewBox="${fmt(left)} ${fmt(top)} ${fmt(width)} ${fmt(height)}">` +
    `<g fill="none" stroke="black" stroke-width="${fmt(pen)}" stroke-linecap="round" ` +
    `stroke-linejoin="round">`
  );
}

function pathData(run) {
  const coords = run.map(([x, y]) => `${fmt(x)} ${fmt(y)}`).join(" L");
  return `M${coords}${run.length === 1 ? " l0 0" : ""}`;
}

// An SVG of lines of handwriting, one under the other (`layout`): a `<g>` per line carrying
// its text as `data-text`, a path per stroke.
export function toSvg(lines, lineHeight) {
  const geometry = layout(lineHeight);
  let bounds = null;
  const groups = lines.map(({ text, strokes }, i) => {
    const shift = i * geometry.pitch;
    const runs = polylines(strokes);
    for (const run of runs) {
      for (const [x, y] of run) bounds = grow(bounds, x, y + shift);
    }
    const paths = runs.map((run) => `<path d="${pathData(run)}"/>`).join("");
    const place = `transform="translate(0 ${fmt(shift)})"`;
    return `<g data-text="${escapeXml(text || "")}" ${place}>${paths}</g>`;
  });
  const box = pictureBox(bounds, lines.length, geometry);
  return `${svgOpen(box, geometry.pen)}${groups.join("")}</g></svg>\n`;
}

function grow(bounds, x, y) {
  if (!bounds) return [x, y, x, y];
  return [
    Math.min(bounds[0], x),
    Math.min(bounds[1], y),
    Math.max(bounds[2], x),
    Math.max(bounds[3], y),
  ];
}

const SVG_NS = "http://www.w3.org/2000/svg";

// The picture drawn while the points come: the same geometry as `toSvg`, grown by appending
// to the current stroke's path (nothing already drawn is rebuilt).
export class LiveSvg {
  constructor(container, texts, lineHeight) {
    this.geometry = layout(lineHeight);
    this.count = texts.length;
    this.bounds = null;
    const box = pictureBox(null, this.count, this.geometry);
    container.innerHTML = `${svgOpen(box, this.geometry.pen)}</g></svg>`;
    this.svg = container.firstElementChild;
    const ink = this.svg.firstElementChild;
    this.lines = texts.map((text, i) => {
      const group = document.createElementNS(SVG_NS, "g");
      group.setAttribute("data-text", text);
      group.setAttribute("transform", `translate(0 ${fmt(i * this.geometry.pitch)})`);
      ink.append(group);
      return { group, x: 0, y: 0, path: null, data: "", penUp: true };
    });
  }

  // Appends points (dx, dy, eos triples, as the strokes hold them) to line `index`.
  add(index, points) {
    const line = this.lines[index];
    const shift = index * this.geometry.pitch;
    for (let i = 0; i < points.length; i += 3) {
      line.x += points[i];
      line.y -= points[i + 1];
      const at = `${fmt(line.x)} ${fmt(line.y)}`;
      if (line.penUp) {
        line.path = document.createElementNS(SVG_NS, "path");
        line.group.append(line.path);
        line.data = `M${at}`;
      } else {
        line.data += ` L${at}`;
      }
      line.penUp = points[i + 2] > 0.5;
      this.bounds = grow(this.bounds, line.x, line.y + shift);
    }
    if (line.path) line.path.setAttribute("d", line.data);
    // The picture grows in steps (4 line heights across, half a line down), so that most
    // points only lengthen a path: a new box redraws the whole picture.
    const { pitch } = this.geometry;
    const [left, top, right, bottom] = pictureBox(this.bounds, this.count, this.geometry);
    const box = [
      Math.floor(left / pitch) * pitch,
      Math.floor(top / (pitch / 2)) * (pitch / 2),
      Math.ceil(right / (4 * pitch)) * 4 * pitch,
      Math.ceil(bottom / (pitch / 2)) * (pitch / 2),
    ];
    const viewBox = `${fmt(box[0])} ${fmt(box[1])} ${fmt(box[2] - box[0])} ${fmt(box[3] - box[1])}`;
    if (viewBox !== this.viewBox) {
      this.viewBox = viewBox;
      this.svg.setAttribute("viewBox", viewBox);
      this.svg.setAttribute("width", fmt(box[2] - box[0]));
      this.svg.setAttribute("height", fmt(box[3] - box[1]));
    }
  }
}

function fmt(value) {
  return value.toFixed(3).replace(/\.?0+$/, "") || "0";
}

function escapeXml(text) {
  return text.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c],
  );
}

// A PNG (Blob) of an SVG string drawn at `scale` pixels per SVG unit, on white.
export async function svgToPng(svg, scale) {
  const image = new Image();
  const url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  try {
    image.src = url;
    await image.decode();
  } finally {
    URL.revokeObjectURL(url);
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(image.width * scale));
  canvas.height = Math.max(1, Math.round(image.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "white";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("no PNG"))), "image/png");
  });
}
