/**
 * deb822 control-format text: `Packages` and `Release` indexes, dpkg status files, `.sources` files.
 *
 * What the parsers accept and produce:
 * - A paragraph is a run of field lines; paragraphs are separated by one or more blank lines (empty or
 *   only spaces and tabs). Leading and trailing blank lines are ignored.
 * - A field line is `Name: value`. The name is kept as written (use `field()` for the case-insensitive
 *   lookup deb822 asks for); the value has blanks around it removed. A name written twice in one
 *   paragraph is an error, as in dpkg.
 * - A continuation line starts with a space or a tab. Its value is the line with that one first
 *   character removed, appended to the field's value after a `\n`; a continuation line that is then
 *   exactly `.` stands for an empty line and appends `\n` plus nothing. So a multi-line value reads
 *   `synopsis\nline\n\nline`, and a field whose first line is empty (Conffiles, the Release file's
 *   SHA256 list) has a value starting with `\n`.
 * - Trailing spaces, tabs and carriage returns are removed from every line.
 * - A line starting with `#` is a comment and is skipped, inside or outside a paragraph (deb822 sources
 *   files put comments between paragraphs; no field name can start with `#`).
 * - Anything else (a line without `:`, a continuation line with no field before it) is an error naming
 *   the line number.
 */

export type Paragraph = Map<string, string>;

/** Parses all paragraphs of a deb822 text. */
export function parseParagraphs(text: string): Paragraph[] {
  const out: Paragraph[] = [];
  const b = newBuilder();
  let pos = 0;
  const n = text.length;
  while (pos < n) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = n;
    const done = feedLine(b, text, pos, nl);
    if (done !== undefined) out.push(done);
    pos = nl + 1;
  }
  const last = finish(b);
  if (last !== undefined) out.push(last);
  return out;
}

/**
 * Parses paragraphs from a stream of chunks (UTF-8 bytes or strings, split anywhere), yielding each
 * paragraph as soon as the blank line after it (or the end of the stream) is seen. Holds only the
 * current paragraph and one partial line, so it reads indexes of any size in constant memory; results
 * are identical to `parseParagraphs` on the concatenated text.
 */
export async function* parseParagraphStream(chunks: AsyncIterable<Buffer | string> | Iterable<Buffer | string>): AsyncGenerator<Paragraph> {
  const b = newBuilder();
  const decoder = new TextDecoder('utf-8');
  let rest = '';
  for await (const chunk of chunks) {
    const text = rest + (typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
    let pos = 0;
    for (;;) {
      const nl = text.indexOf('\n', pos);
      if (nl < 0) break;
      const done = feedLine(b, text, pos, nl);
      pos = nl + 1;
      if (done !== undefined) yield done;
    }
    rest = pos === 0 ? text : text.slice(pos);
  }
  rest += decoder.decode();
  if (rest.length > 0) {
    const done = feedLine(b, rest, 0, rest.length);
    if (done !== undefined) yield done;
  }
  const last = finish(b);
  if (last !== undefined) yield last;
}

/** The value of field `name`, matched case-insensitively as deb822 requires; undefined when absent. */
export function field(p: Paragraph, name: string): string | undefined {
  const v = p.get(name);
  if (v !== undefined) return v;
  const lower = name.toLowerCase();
  for (const [k, val] of p) {
    if (k.length === name.length && k.toLowerCase() === lower) return val;
  }
  return undefined;
}

/**
 * Writes one paragraph the way dpkg writes its status file: `Name: value` lines; each further line of
 * a multi-line value on its own line after one space, an empty (or blank) line as ` .`; a value starting
 * with `\n` gives a bare `Name:` first line. Every line ends with `\n`; separate paragraphs with one more
 * `\n`. The inverse of the parsers for values they produce. Throws on a field name that cannot be
 * written (empty, or containing `:` or blanks, or starting with `#` or `-`).
 */
export function formatParagraph(fields: [string, string][]): string {
  let out = '';
  for (const [name, value] of fields) {
    if (!/^[^\s:#-][^\s:]*$/.test(name)) throw new Error(`cannot write deb822 field name "${name}"`);
    const lines = value.split('\n');
    const first = lines[0]!.trim();
    out += first === '' ? `${name}:\n` : `${name}: ${first}\n`;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!.trimEnd();
      out += line.trim() === '' ? ' .\n' : ` ${line}\n`;
    }
  }
  return out;
}

interface Builder {
  para: Paragraph | undefined;
  name: string;
  value: string;
  /** 1-based number of the line being fed. */
  line: number;
}

function newBuilder(): Builder {
  return { para: undefined, name: '', value: '', line: 0 };
}

const SPACE = 32;
const TAB = 9;
const CR = 13;
const HASH = 35;
const DOT = 46;
const COLON = 58;

/** Feeds the line `s[start, end)` (no newline); returns the paragraph a blank line completes. */
function feedLine(b: Builder, s: string, start: number, end: number): Paragraph | undefined {
  b.line++;
  let e = end;
  while (e > start) {
    const c = s.charCodeAt(e - 1);
    if (c !== SPACE && c !== TAB && c !== CR) break;
    e--;
  }
  if (e === start) return finish(b);
  const c0 = s.charCodeAt(start);
  if (c0 === HASH) return undefined;
  if (c0 === SPACE || c0 === TAB) {
    if (b.para === undefined) throw new Error(`deb822 line ${b.line}: continuation line outside a field`);
    b.value += e === start + 2 && s.charCodeAt(start + 1) === DOT ? '\n' : '\n' + s.slice(start + 1, e);
    return undefined;
  }
  const colon = s.indexOf(':', start);
  if (colon < 0 || colon >= e) throw new Error(`deb822 line ${b.line}: expected "Field: value", got "${s.slice(start, e)}"`);
  let ne = colon;
  while (ne > start && (s.charCodeAt(ne - 1) === SPACE || s.charCodeAt(ne - 1) === TAB)) ne--;
  if (ne === start) throw new Error(`deb822 line ${b.line}: empty field name`);
  let vs = colon + 1;
  while (vs < e && (s.charCodeAt(vs) === SPACE || s.charCodeAt(vs) === TAB)) vs++;
  if (b.para === undefined) b.para = new Map();
  else commit(b);
  b.name = s.slice(start, ne);
  b.value = s.slice(vs, e);
  return undefined;
}

function commit(b: Builder): void {
  const p = b.para!;
  if (p.has(b.name)) throw new Error(`deb822 near line ${b.line}: field "${b.name}" appears twice in one paragraph`);
  p.set(b.name, b.value);
}

/** Ends the current paragraph, if any, and returns it. */
function finish(b: Builder): Paragraph | undefined {
  const p = b.para;
  if (p === undefined) return undefined;
  commit(b);
  b.para = undefined;
  return p;
}
