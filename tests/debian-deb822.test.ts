/**
 * deb822 parsing against real oracles: `grep-dctrl` (dctrl-tools) on the host's Packages indexes and
 * dpkg status file, `dpkg-query` on the status file; the streaming parser against the whole-text parser
 * on tiny random chunks; hand-written cases for the format's corners.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { field, formatParagraph, parseParagraphs, parseParagraphStream, type Paragraph } from '../debian/deb822.ts';
import { aptPackagesIndexes, DPKG_STATUS, dpkgStatusText } from './helpers/aptIndexes.ts';

const hasGrepDctrl = spawnSync('grep-dctrl', ['--version']).status === 0;

/** Writes the chosen fields of each paragraph, in the given order, as grep-dctrl -s does. */
function select(paras: Paragraph[], names: string[]): string {
  return paras
    .map((p) => formatParagraph(names.flatMap((n): [string, string][] => (p.has(n) ? [[n, p.get(n)!]] : []))))
    .filter((s) => s !== '')
    .join('\n');
}

/** The first paragraph where two `\n\n`-separated texts differ, for a readable failure. */
function firstDifference(a: string, b: string): string | undefined {
  if (a === b) return undefined;
  const pa = a.split('\n\n');
  const pb = b.split('\n\n');
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if (pa[i] !== pb[i]) return `paragraph ${i}:\n--- parsed\n${pa[i]}\n--- oracle\n${pb[i]}`;
  }
  return 'texts differ only in separators';
}

/** grep-dctrl's selection, normalised: it writes `Name: ` with a trailing blank where dpkg writes `Name:`, and ends with a blank line. */
function grepDctrl(path: string, names: string[]): string {
  return execFileSync('grep-dctrl', ['-s', names.join(','), '', path], { encoding: 'utf8', maxBuffer: 1 << 30 })
    .replace(/[ \t]+$/gm, '')
    .replace(/\n+$/, '\n');
}

/** Real indexes carry a few trailing blanks (which parsing drops, as dpkg does); otherwise formatting reproduces them. */
function normalise(text: string): string {
  return text.replace(/[ \t]+$/gm, '').replace(/\n+$/, '\n');
}

function withTempFile<T>(text: string, fn: (path: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'strata-deb822-'));
  try {
    const path = join(dir, 'Packages');
    writeFileSync(path, text);
    return fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const PACKAGES_FIELDS = ['Package', 'Version', 'Architecture', 'Filename', 'SHA256', 'Depends', 'Provides', 'Tag', 'Description'];
const STATUS_FIELDS = ['Package', 'Status', 'Version', 'Depends', 'Conffiles', 'Description'];

test('Packages indexes: selected fields match grep-dctrl, and whole paragraphs format back identically', (t) => {
  if (!hasGrepDctrl) return t.fail('grep-dctrl (dctrl-tools) is needed as the oracle');
  const indexes = aptPackagesIndexes();
  if (indexes.length === 0) return t.pass('no apt Packages indexes on this host (run apt-get update)');
  let total = 0;
  for (const { path, text } of indexes) {
    const paras = parseParagraphs(text);
    total += paras.length;
    withTempFile(text, (tmp) => {
      t.is(firstDifference(select(paras, PACKAGES_FIELDS), grepDctrl(tmp, PACKAGES_FIELDS)), undefined, path);
    });
    t.is(paras.map((p) => formatParagraph([...p])).join('\n'), normalise(text), `${path} round-trips`);
  }
  t.log(`${total} paragraphs in ${indexes.length} indexes`);
});

test('dpkg status file: matches dpkg-query and grep-dctrl, and formats back identically', (t) => {
  const text = dpkgStatusText();
  if (text === '') return t.fail('no dpkg status file');
  const paras = parseParagraphs(text);
  const mine = paras
    .filter((p) => !field(p, 'Status')!.endsWith(' not-installed'))
    .map((p) => `${field(p, 'Package')}:${field(p, 'Architecture')} ${field(p, 'Version')}`)
    .sort();
  const oracle = execFileSync('dpkg-query', ['-W', '-f', '${Package}:${Architecture} ${Version}\n'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '')
    .sort();
  t.true(oracle.length > 10);
  t.deepEqual(mine, oracle);
  // Multi-line values (Description) as dpkg-query prints them: the first line, then continuation lines.
  const described = paras.filter((p) => p.has('Description')).slice(0, 200);
  const wanted = execFileSync('dpkg-query', ['-W', '-f', '${Package}:${Architecture}\x1f${Description}\x1e', ...described.map((p) => `${p.get('Package')}:${p.get('Architecture')}`)], { encoding: 'utf8' });
  const byName = new Map(wanted.split('\x1e').filter((r) => r !== '').map((r) => r.split('\x1f') as [string, string]));
  for (const p of described) {
    const raw = formatParagraph([['Description', p.get('Description')!]]).slice('Description: '.length, -1);
    t.is(raw as string | undefined, byName.get(`${p.get('Package')}:${p.get('Architecture')}`));
  }
  if (hasGrepDctrl) t.is(firstDifference(select(paras, STATUS_FIELDS), grepDctrl(DPKG_STATUS, STATUS_FIELDS)), undefined);
  t.is(paras.map((p) => formatParagraph([...p])).join('\n'), normalise(text));
});

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function* randomChunks(bytes: Buffer, seed: number, max: number): Generator<Buffer> {
  const r = rng(seed);
  for (let i = 0; i < bytes.length; ) {
    const n = 1 + Math.floor(r() * max);
    yield bytes.subarray(i, i + n);
    i += n;
  }
}

/** The paragraphs of `text` that end within its first MiB: a cut at 1 MiB itself may fall inside a line. */
function firstMiB(text: string): string {
  if (text.length <= 1 << 20) return text;
  const end = text.lastIndexOf('\n\n', 1 << 20);
  return end < 0 ? '' : text.slice(0, end + 1);
}

async function collect(it: AsyncIterable<Paragraph>): Promise<string[]> {
  const out: string[] = [];
  for await (const p of it) out.push(JSON.stringify([...p]));
  return out;
}

test('the streaming parser gives the whole-text parser\'s results on tiny random chunks, UTF-8 split anywhere', async (t) => {
  const samples = [dpkgStatusText(), firstMiB(aptPackagesIndexes()[0]?.text ?? ''), HAND_WRITTEN, 'A: b\n c', '\n\n\nA: 1\n\n\n'];
  let n = 0;
  for (const [i, text] of samples.entries()) {
    if (text === '') continue;
    const whole = parseParagraphs(text).map((p) => JSON.stringify([...p]));
    const bytes = Buffer.from(text, 'utf8');
    for (const [seed, max] of [[i + 1, 3], [i + 100, 17], [i + 200, 4096]] as const) {
      const streamed = await collect(parseParagraphStream(randomChunks(bytes, seed, max)));
      t.is(streamed.length, whole.length);
      t.true(streamed.every((s, k) => s === whole[k]), `sample ${i}, chunks of 1..${max} bytes`);
      n += streamed.length;
    }
    // String chunks too.
    const strings: string[] = [];
    for (let k = 0; k < text.length; k += 7) strings.push(text.slice(k, k + 7));
    t.deepEqual(await collect(parseParagraphStream(strings)), whole);
  }
  t.true(n > 0);
});

// Serial, so that the other tests' synchronous work does not land inside the timing.
test.serial('the streaming parser reads a whole Packages index from disk and reports its speed', async (t) => {
  const index = aptPackagesIndexes().sort((a, b) => b.text.length - a.text.length)[0];
  if (!index) return t.pass('no apt Packages indexes on this host (run apt-get update)');
  const whole = parseParagraphs(index.text);
  const dir = mkdtempSync(join(tmpdir(), 'strata-deb822-'));
  try {
    const path = join(dir, 'Packages');
    writeFileSync(path, index.text);
    const size = statSync(path).size;
    const started = performance.now();
    let count = 0;
    for await (const _ of parseParagraphStream(createReadStream(path))) count++;
    const seconds = (performance.now() - started) / 1000;
    t.log(`${(size / 1e6).toFixed(1)} MB, ${count} paragraphs in ${seconds.toFixed(2)} s: ${(size / 1e6 / seconds).toFixed(0)} MB/s`);
    let k = 0;
    let same = true;
    for await (const p of parseParagraphStream(createReadStream(path))) {
      const w = whole[k++];
      if (!w || w.size !== p.size || [...p].some(([f, v]) => w.get(f) !== v)) same = false;
    }
    t.is(count, k);
    t.is(k, whole.length);
    t.true(same);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const HAND_WRITTEN = `# a comment before the first paragraph

Package: café
Version:1.0-1
Description:   synopsis with spaces around\t
 first line
 .
  indented verbatim line
\t tab-continued line
 ..
Conffiles:
 /etc/a 0123
 /etc/b 4567
x-Custom : value
# a comment inside a paragraph
Empty:
\r
\t
Package: second\r
Depends: a,\r
 b\r

`;

test('hand-written corners: continuation lines, " .", tabs, CRLF, comments, blank separators', (t) => {
  const ps = parseParagraphs(HAND_WRITTEN);
  t.is(ps.length, 2);
  t.deepEqual([...ps[0]!], [
    ['Package', 'café'],
    ['Version', '1.0-1'],
    ['Description', 'synopsis with spaces around\nfirst line\n\n indented verbatim line\n tab-continued line\n..'],
    ['Conffiles', '\n/etc/a 0123\n/etc/b 4567'],
    ['x-Custom', 'value'],
    ['Empty', ''],
  ]);
  t.deepEqual([...ps[1]!], [
    ['Package', 'second'],
    ['Depends', 'a,\nb'],
  ]);
  t.is(field(ps[0]!, 'x-custom'), 'value');
  t.is(field(ps[0]!, 'PACKAGE'), 'café');
  t.is(field(ps[0]!, 'Missing'), undefined);
  t.deepEqual(parseParagraphs(''), []);
  t.deepEqual(parseParagraphs('\n \n\t\n'), []);
  t.deepEqual(parseParagraphs('A: 1\nB: 2'), [new Map([['A', '1'], ['B', '2']])]);
});

test('malformed text is an error naming the line', (t) => {
  t.throws(() => parseParagraphs('A: 1\nnot a field\n'), { message: /line 2: expected "Field: value"/ });
  t.throws(() => parseParagraphs(' continued\n'), { message: /line 1: continuation line outside a field/ });
  t.throws(() => parseParagraphs('A: 1\n\n continued\n'), { message: /line 3: continuation/ });
  t.throws(() => parseParagraphs('A: 1\nB: 2\nA: 3\n'), { message: /field "A" appears twice/ });
  t.throws(() => parseParagraphs(': value\n'), { message: /empty field name/ });
});

test('formatParagraph writes dpkg status style and inverts the parser', (t) => {
  const fields: [string, string][] = [
    ['Package', 'foo'],
    ['Conffiles', '\n/etc/foo abc'],
    ['Description', 'synopsis\nbody line\n\n indented\n   \nend'],
  ];
  const text = formatParagraph(fields);
  t.is(text, 'Package: foo\nConffiles:\n /etc/foo abc\nDescription: synopsis\n body line\n .\n  indented\n .\n end\n');
  t.deepEqual([...parseParagraphs(text)[0]!], [fields[0], fields[1], ['Description', 'synopsis\nbody line\n\n indented\n\nend']]);
  for (const bad of ['', 'A:B', 'A B', '#A', '-A']) t.throws(() => formatParagraph([[bad, 'x']]), { message: /cannot write deb822 field name/ });
  t.is(formatParagraph([]), '');
});
