// The text a page writes: checked against the model's alphabet, wrapped into lines as the
// command line does (handwriting/text.py: `check_text`, `wrap`).
//
// Positions count characters (Unicode code points), as Python's str does; `offset` is the
// position in the JavaScript string (UTF-16 units), which the text box marks.

// Most characters a request may hold (handwriting/text.py MAX_TEXT_CHARS).
export const MAX_TEXT_CHARS = 2000;
// Characters per line when text is wrapped (handwriting/text.py DEFAULT_WIDTH).
export const DEFAULT_WIDTH = 60;

const CONTROL = /^\p{C}$/u; // Unicode category C: controls, format, unassigned, private use

// Unicode name-less description of a character: 'é' (U+00E9).
export function describe(char) {
  const code = char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  const shown = CONTROL.test(char) || char === " " ? "" : `'${char}' `;
  return `${shown}(U+${code})`;
}

// Every character of `text` the model cannot write, in order:
// [{position, offset, length, char, reason}]. Newlines break lines where `allowNewlines`.
export function findProblems(text, alphabet, { allowNewlines = true } = {}) {
  const allowed = new Set(alphabet);
  const problems = [];
  let position = 0;
  let offset = 0;
  for (const char of text) {
    if (!(allowNewlines && char === "\n")) {
      let reason = null;
      if (CONTROL.test(char)) {
        reason = "is a control character; only printable characters can be written";
      } else if (!allowed.has(char)) {
        reason = "is not in the model's alphabet";
      }
      if (reason) problems.push({ position, offset, length: char.length, char, reason });
    }
    position += 1;
    offset += char.length;
  }
  return problems;
}

// Why `text` cannot be written, in one sentence, or null: empty, too long, or the first
// problem characters (as handwriting/text.py says it).
export function textError(text, alphabet, { what = "text", allowNewlines = true } = {}) {
  if (!text.trim()) return `${what} is empty; give at least one character to write`;
  const count = [...text].length;
  if (count > MAX_TEXT_CHARS) {
    return `${what} has ${count} characters; the limit is ${MAX_TEXT_CHARS} per request`;
  }
  const problems = findProblems(text, alphabet, { allowNewlines });
  if (problems.length) {
    const listed = problems
      .slice(0, 5)
      .map((p) => `${describe(p.char)} at position ${p.position} ${p.reason}`)
      .join("; ");
    const more = problems.length > 5 ? ` and ${problems.length - 5} more` : "";
    return `${what} holds characters the model cannot write: ${listed}${more}`;
  }
  return null;
}

// Lines of at most `width` characters, broken at spaces where possible: Python's
// textwrap.wrap(" ".join(paragraph.split()), width, break_on_hyphens=False) per paragraph,
// as handwriting/text.py `wrap` does. Newlines end paragraphs, blank ones are dropped, runs of
// spaces become one, a word longer than `width` is broken.
export function wrap(text, width = DEFAULT_WIDTH) {
  if (!Number.isInteger(width) || width < 1) {
    throw new RangeError(`width must be a positive integer, received ${width}`);
  }
  const lines = [];
  for (const paragraph of text.split("\n")) {
    const words = paragraph.split(/\s+/u).filter((w) => w !== "");
    if (!words.length) continue;
    // textwrap's chunks: words and the single spaces between them, as arrays of characters.
    const chunks = [];
    words.forEach((word, i) => {
      if (i) chunks.push([" "]);
      chunks.push([...word]);
    });
    chunks.reverse();
    const paragraphLines = [];
    while (chunks.length) {
      const line = [];
      let length = 0;
      // A space at the start of a line (but the paragraph's first) is dropped.
      if (isSpace(chunks[chunks.length - 1]) && paragraphLines.length) chunks.pop();
      while (chunks.length && length + chunks[chunks.length - 1].length <= width) {
        const chunk = chunks.pop();
        line.push(chunk);
        length += chunk.length;
      }
      if (chunks.length && chunks[chunks.length - 1].length > width) {
        // A word longer than a line: as much of it as fits, the rest on the next lines.
        const chunk = chunks[chunks.length - 1];
        // With no room left, textwrap adds an empty piece, which the next statement drops in
        // place of the space before it (so that space stays): kept for the same lines.
        const room = width - length;
        line.push(chunk.slice(0, room));
        chunks[chunks.length - 1] = chunk.slice(room);
      }
      if (line.length && isSpace(line[line.length - 1])) line.pop();
      if (line.length) paragraphLines.push(line.map((c) => c.join("")).join(""));
    }
    lines.push(...paragraphLines);
  }
  return lines;
}

function isSpace(chunk) {
  return chunk.every((c) => /\s/u.test(c));
}
