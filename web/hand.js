// "Make it my hand": the lines a person writes on the pad go to the page's server, which
// adapts the model to them in the background (handwriting/adapt_jobs.py: python -m handwriting
// adapt, then python -m export); the page follows the job, then writes with the personal model.
//
// The server's requests (handwriting/serve.py): GET api/adapt (the job's state and the limits
// of a request: `min_lines`, the lines asked for first, and the others), POST api/adapt (the
// stroke JSON of the lines), DELETE api/adapt (stop the job), GET api/models and
// api/my-hand.zip. A page published on a static host has none of them: the section stays
// hidden.

import { toStrokeJson, toSvg } from "./strokes.js";

export const ADAPT_URL = "api/adapt";
export const MODELS_URL = "api/models";
// Milliseconds between two questions about a running job.
const POLL_MS = 500;
// The states of a job in progress (handwriting/adapt_jobs.py RUNNING).
const RUNNING = ["adapting", "exporting"];

const $ = (id) => document.getElementById(id);

// A request whose answer is JSON: {ok, status, body}, body null when the answer is not JSON.
export async function requestJson(url, options = {}) {
  const response = await fetch(url, { cache: "no-store", ...options });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return { ok: response.ok, status: response.status, body };
}

// m:ss of a number of seconds.
function clock(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function figure(value) {
  return typeof value === "number" ? value.toFixed(3) : "?";
}

export class MyHand {
  // padLine(): the pad's line as {text, strokes} or {error}; clearPad(): empties the pad;
  // lineHeight(): the data's line height (thumbnails); onReady(): a job the page followed is
  // done, so the server has a personal model.
  constructor({ padLine, clearPad, lineHeight, onReady }) {
    this.padLine = padLine;
    this.clearPad = clearPad;
    this.lineHeight = lineHeight;
    this.onReady = onReady;
    this.lines = []; // {text, strokes: Float32Array}
    this.status = null; // the server's latest answer of GET api/adapt
    this.seen = []; // the states of the jobs followed, in order (for the tests)
    this.polling = false;
  }

  // Asks the server about adapting; shows the section when it answers (not on a static host).
  async start() {
    let answer;
    try {
      answer = await requestJson(ADAPT_URL);
    } catch {
      return;
    }
    if (!answer.ok || !answer.body) return;
    this.status = answer.body;
    $("hand").hidden = false;
    $("add-line").hidden = false;
    $("add-line").onclick = () => this.add();
    $("adapt").onclick = () => this.adapt();
    $("adapt-stop").onclick = () => this.stop();
    $("save-lines").onclick = () => this.save();
    this.show(answer.body);
    if (RUNNING.includes(answer.body.state)) this.poll();
  }

  get running() {
    return Boolean(this.status && RUNNING.includes(this.status.state));
  }

  // The pad's line joins the lines (checked as a prime is, and for the points adapting needs).
  add() {
    const line = this.padLine();
    const say = (text) => {
      $("pad-message").textContent = text;
    };
    if (line.error) return say(line.error);
    const points = line.strokes.length / 3;
    if (points < this.status.min_points) {
      return say(`Your line has ${points} points; adapting needs ${this.status.min_points}.`);
    }
    if (this.lines.length >= this.status.max_lines) {
      return say(`You have ${this.lines.length} lines, as many as adapting takes.`);
    }
    this.lines.push({ text: line.text, strokes: line.strokes });
    this.clearPad();
    say(`Added “${line.text}” to your lines (${this.lines.length}). Write the next one.`);
    this.show();
  }

  remove(index) {
    this.lines.splice(index, 1);
    this.show();
  }

  save() {
    const blob = new Blob([toStrokeJson(this.lines)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "my-lines.json";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  async adapt() {
    const { min_lines: least, max_request_bytes: most } = this.status;
    if (this.running || this.lines.length < least) return;
    const body = toStrokeJson(this.lines);
    if (new Blob([body]).size > most) {
      this.say(`Your lines take more than ${most >> 20} MiB: remove a few long ones.`);
      return;
    }
    $("adapt").disabled = true;
    let answer;
    try {
      answer = await requestJson(ADAPT_URL, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body,
      });
    } catch (error) {
      this.show();
      this.say(`Not started: the server did not answer (${error.message}).`);
      return;
    }
    if (!answer.ok) {
      this.show();
      this.say(`Not started: ${answer.body?.error ?? `the server answered ${answer.status}`}.`);
      return;
    }
    this.seen = [];
    this.show(answer.body);
    this.poll();
  }

  async stop() {
    $("adapt-stop").disabled = true;
    let answer;
    try {
      answer = await requestJson(ADAPT_URL, { method: "DELETE" });
    } catch (error) {
      this.say(`The server did not answer (${error.message}).`);
      return;
    }
    if (answer.ok) this.show(answer.body);
    else this.say(answer.body?.error ?? `The server answered ${answer.status}.`);
  }

  // Follows the running job until it ends; a job done calls onReady.
  async poll() {
    if (this.polling) return;
    this.polling = true;
    try {
      while (this.running) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        let answer;
        try {
          answer = await requestJson(ADAPT_URL);
        } catch {
          continue; // the server is busy or restarting: ask again
        }
        if (answer.ok && answer.body) this.show(answer.body);
      }
    } finally {
      this.polling = false;
    }
    if (this.status.state === "done") await this.onReady();
  }

  say(text) {
    $("hand-message").textContent = text;
  }

  // Shows the lines, the buttons and the job's state (`status`: a new answer of the server).
  show(status) {
    if (!status && !this.status) return; // the server has not answered yet
    if (status) {
      this.status = status;
      if (this.seen[this.seen.length - 1] !== status.state) this.seen.push(status.state);
    }
    const s = this.status;
    $("hand").dataset.state = s.state;
    this.renderLines();
    const running = this.running;
    $("adapt").disabled = running || this.lines.length < s.min_lines;
    $("adapt-stop").disabled = !running;
    $("save-lines").disabled = !this.lines.length;
    $("download-hand").hidden = !s.personal;
    const progress = $("adapt-progress");
    progress.hidden = !running;
    if (typeof s.fraction === "number") progress.value = s.fraction;
    else progress.removeAttribute("value"); // indeterminate
    this.say(this.describe());
  }

  describe() {
    const s = this.status;
    const count = this.lines.length;
    const elapsed = clock(s.elapsed ?? 0);
    if (s.state === "adapting" && s.step === null) {
      return `Starting: loading the model (${elapsed})…`;
    }
    if (s.state === "adapting") {
      return (
        `Adapting: step ${s.step} of ${s.steps}; your held-out line ${figure(s.held_out)} ` +
        `nats per point (${figure(s.held_out_before)} before; lower is closer to your hand). ` +
        `${elapsed} of at most ${clock(s.budget)}.`
      );
    }
    if (s.state === "exporting") return `Exporting your model for the page (${elapsed})…`;
    if (s.state === "done") {
      return (
        `Your hand is ready (${elapsed}): your held-out line ${figure(s.best_held_out)} nats ` +
        `per point, ${figure(s.held_out_before)} before. The page writes with it now; ` +
        "“Download my model” saves it for the command line."
      );
    }
    if (s.state === "failed") return `Making your hand failed: ${s.error}`;
    if (s.state === "cancelled") return "Stopped; your lines are still here.";
    if (count < s.min_lines) {
      const more = s.min_lines - count;
      return (
        `${count} of ${s.min_lines} lines: write ${more} more on the pad and add each with ` +
        "“Add to my lines”."
      );
    }
    return `${count} lines: press “Make it my hand”.`;
  }

  renderLines() {
    const list = $("my-lines");
    list.replaceChildren();
    this.lines.forEach((line, index) => {
      const item = document.createElement("li");
      const picture = document.createElement("div");
      picture.className = "thumbnail";
      picture.innerHTML = toSvg([line], this.lineHeight());
      const label = document.createElement("span");
      label.textContent = line.text;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove line ${index + 1}, “${line.text}”`);
      remove.disabled = this.running;
      remove.onclick = () => this.remove(index);
      item.append(picture, label, remove);
      list.append(item);
    });
  }
}
