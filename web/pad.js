// The writing pad: a canvas on which a person writes a line with a mouse, a pen or a finger.
//
// Pointer events (one pointer at a time) give the pen-down runs, each point with its
// timestamp; lifting the pen ends a run. Undo removes the last run, clear removes them all.
// Two guide lines mark the band a line's ink should take (`bandPx`): strokes.js scales that
// band to the model's line height.

const GUIDE_COLOUR = "#b9c6d6";
const INK_COLOUR = "#1b2a41";

export class Pad {
  // canvas: the <canvas>; onChange: called after every change of the runs.
  constructor(canvas, onChange = () => {}) {
    this.canvas = canvas;
    this.onChange = onChange;
    this.runs = []; // [[{x, y, t}, ...], ...] CSS pixels, y down, t in ms
    this.current = null;
    this.pointer = null;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
      canvas.addEventListener(type, (e) => this.up(e));
    }
    new ResizeObserver(() => this.draw()).observe(canvas);
    this.draw();
  }

  // The band between the guide lines, in CSS pixels: [top, bottom].
  get band() {
    const height = this.canvas.clientHeight || this.canvas.height;
    return [height * 0.25, height * 0.8];
  }

  get bandPx() {
    const [top, bottom] = this.band;
    return bottom - top;
  }

  get pointCount() {
    return this.runs.reduce((n, run) => n + run.length, 0);
  }

  position(event) {
    const box = this.canvas.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top, t: event.timeStamp };
  }

  down(event) {
    if (this.pointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    this.pointer = event.pointerId;
    this.canvas.setPointerCapture?.(event.pointerId);
    this.current = [this.position(event)];
    this.runs.push(this.current);
    this.draw();
  }

  move(event) {
    if (event.pointerId !== this.pointer || !this.current) return;
    event.preventDefault();
    const events = event.getCoalescedEvents?.() || [];
    for (const e of events.length ? events : [event]) this.current.push(this.position(e));
    this.draw();
  }

  up(event) {
    if (event.pointerId !== this.pointer) return;
    this.pointer = null;
    this.current = null;
    this.onChange();
  }

  undo() {
    this.runs.pop();
    this.draw();
    this.onChange();
  }

  clear() {
    this.runs = [];
    this.draw();
    this.onChange();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (
      canvas.width !== Math.round(width * ratio) ||
      canvas.height !== Math.round(height * ratio)
    ) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    context.strokeStyle = GUIDE_COLOUR;
    context.lineWidth = 1;
    context.setLineDash([6, 6]);
    for (const y of this.band) {
      context.beginPath();
      context.moveTo(0, y);
      context.lineTo(width, y);
      context.stroke();
    }
    context.setLineDash([]);
    context.strokeStyle = INK_COLOUR;
    context.lineWidth = 2.5;
    context.lineCap = "round";
    context.lineJoin = "round";
    for (const run of this.runs) {
      context.beginPath();
      context.moveTo(run[0].x, run[0].y);
      for (const p of run.length > 1 ? run.slice(1) : run) context.lineTo(p.x, p.y);
      context.stroke();
    }
  }
}
