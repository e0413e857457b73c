/**
 * The parsed form of one verified `Packages` index, as the store's `indexes` cache keeps it (derived data: see
 * channels/channel.ts for its key), in a shape that a lock reads without decoding the whole index. An entry is a
 * directory of two files:
 *
 *   candidates   for each name of the name table, in its order, one JSON array of the rows (Row) of that name's
 *                candidates, in index order; a lock reads only the names it looks up
 *   tables       a u32 (little-endian) header length, a JSON header (Header), then the sections it places: string
 *                tables (sorted by their UTF-8 bytes, which are back to back, with n + 1 offsets), lists of name
 *                positions (n + 1 starts into one u32 array) and u32 arrays, read in place, never decoded whole:
 *                  names, offsets      each name, and the byte range of its array in `candidates` (n + 1 offsets)
 *                  virtuals, providers each virtual name, and the names with a candidate that provides it
 *                  essential           the names with an Essential candidate
 *                  sources, built      each source package, and the names built from it
 *
 * Opening an entry reads `tables` whole and checks its header, its sections' crc32 and the size of `candidates`; an
 * entry that does not pass reads as missing (its owner parses the index again). `checkIndexCache` also checks the
 * crc32 of `candidates`, for `strata verify`.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { StrataError } from '../errors.ts';
import { parseProvides } from '../debian/relation.ts';
import type { Candidate, CandidateIndex } from '../model.ts';

const TABLES = 'tables';
const CANDIDATES = 'candidates';

const SECTIONS = ['names', 'namesAt', 'offsets', 'virtuals', 'virtualsAt', 'providersAt', 'providers', 'essential', 'sources', 'sourcesAt', 'builtAt', 'built'] as const;
type Section = (typeof SECTIONS)[number];

/** `tables`' header: the size and crc32 of `candidates`, the crc32 of the sections, and where each section lies after the header. */
interface Header {
  bytes: number;
  crc32: { candidates: number; sections: number };
  sections: Record<Section, [offset: number, length: number]>;
}

/**
 * A candidate's fields as one row, the name, channel and rank left out (the name table and the reader give them);
 * an optional field that is absent is null.
 */
type Row = [
  version: string, arch: string, source: string, sourceVersion: string, essential: boolean,
  depends: string, preDepends: string, recommends: string, provides: string, conflicts: string, breaks: string,
  filename: string, size: number, sha256: string,
  multiArch: string | null, priority: string | null, section: string | null, maintainer: string | null,
  homepage: string | null, description: string | null, installedSize: number | null,
];

function toRow(c: Candidate): Row {
  return [
    c.version, c.arch, c.source, c.sourceVersion, c.essential,
    c.depends, c.preDepends, c.recommends, c.provides, c.conflicts, c.breaks,
    c.filename, c.size, c.sha256,
    c.multiArch ?? null, c.priority ?? null, c.section ?? null, c.maintainer ?? null,
    c.homepage ?? null, c.description ?? null, c.installedSize ?? null,
  ];
}

function fromRow(name: string, r: Row, channel: string, channelRank: number): Candidate {
  const c: Candidate = {
    name, version: r[0], arch: r[1], channel, channelRank, source: r[2], sourceVersion: r[3], essential: r[4],
    depends: r[5], preDepends: r[6], recommends: r[7], provides: r[8], conflicts: r[9], breaks: r[10],
    filename: r[11], size: r[12], sha256: r[13],
  };
  if (r[14] !== null) c.multiArch = r[14];
  if (r[15] !== null) c.priority = r[15];
  if (r[16] !== null) c.section = r[16];
  if (r[17] !== null) c.maintainer = r[17];
  if (r[18] !== null) c.homepage = r[18];
  if (r[19] !== null) c.description = r[19];
  if (r[20] !== null) c.installedSize = r[20];
  return c;
}

/** Writes the entry for `candidates` (one index's, in index order) into the directory `dir`. */
export async function writeIndexCache(dir: string, candidates: Candidate[]): Promise<void> {
  const groups = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const g = groups.get(c.name);
    if (g) g.push(c);
    else groups.set(c.name, [c]);
  }
  const names = byteOrder(groups.keys());
  const [blob, offsets] = stringTable(names.map((n) => JSON.stringify(groups.get(n)!.map(toRow))));
  const position = new Map(names.map((n, i) => [n, i]));
  const virtual = new Map<string, Set<number>>();
  const sources = new Map<string, Set<number>>();
  const essential = new Set<number>();
  for (const c of candidates) {
    const at = position.get(c.name)!;
    for (const p of parseProvides(c.provides)) addTo(virtual, p.name, at);
    addTo(sources, c.source, at);
    if (c.essential) essential.add(at);
  }
  const [virtuals, virtualsAt, providersAt, providers] = keyedLists(virtual);
  const [sourceNames, sourcesAt, builtAt, built] = keyedLists(sources);
  const [namesText, namesAt] = stringTable(names);
  const sections: Record<Section, Buffer> = {
    names: namesText, namesAt, offsets, virtuals, virtualsAt, providersAt, providers,
    essential: u32Array([...essential].sort((a, b) => a - b)), sources: sourceNames, sourcesAt, builtAt, built,
  };
  await writeFile(join(dir, CANDIDATES), blob);
  await writeFile(join(dir, TABLES), tablesFile(sections, blob));
}

function addTo(m: Map<string, Set<number>>, key: string, at: number): void {
  const s = m.get(key);
  if (s) s.add(at);
  else m.set(key, new Set([at]));
}

function u32Array(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32LE(v, i * 4));
  return b;
}

/** Strings as a table: their UTF-8 bytes back to back, and their n + 1 offsets. */
function stringTable(list: string[]): [text: Buffer, at: Buffer] {
  const texts = list.map((s) => Buffer.from(s));
  const at = [0];
  for (const t of texts) at.push(at[at.length - 1]! + t.length);
  return [Buffer.concat(texts), u32Array(at)];
}

/** Strings sorted by their UTF-8 bytes (code point order), the order a table is searched in place by. */
function byteOrder(strings: Iterable<string>): string[] {
  return [...strings].map((s) => ({ s, b: Buffer.from(s) })).sort((x, y) => Buffer.compare(x.b, y.b)).map((x) => x.s);
}

/** A map of sets of positions as its sorted keys' table, and for each key (n + 1 starts) its sorted positions. */
function keyedLists(m: Map<string, Set<number>>): [text: Buffer, at: Buffer, starts: Buffer, items: Buffer] {
  const keys = byteOrder(m.keys());
  const items: number[] = [];
  const starts = [0];
  for (const k of keys) {
    items.push(...[...m.get(k)!].sort((a, b) => a - b));
    starts.push(items.length);
  }
  return [...stringTable(keys), u32Array(starts), u32Array(items)];
}

function tablesFile(sections: Record<Section, Buffer>, blob: Buffer): Buffer {
  const placed = {} as Header['sections'];
  let offset = 0;
  for (const s of SECTIONS) {
    placed[s] = [offset, sections[s].length];
    offset += sections[s].length;
  }
  const body = Buffer.concat(SECTIONS.map((s) => sections[s]));
  const header: Header = { bytes: blob.length, crc32: { candidates: crc32(blob), sections: crc32(body) }, sections: placed };
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  return Buffer.concat([length, json, body]);
}

/** The entry in `dir` as the candidates of channel `channel` (rank `rank`); undefined when it is missing or does not pass. */
export async function readIndexCache(dir: string, channel: string, rank: number): Promise<CandidateIndex | undefined> {
  const entry = await readEntry(dir);
  return entry && openIndex(entry, join(dir, CANDIDATES), channel, rank);
}

/** Why the entry in `dir` cannot be used (missing, cut short, damaged), or undefined when it can. */
export async function checkIndexCache(dir: string): Promise<string | undefined> {
  const entry = await readEntry(dir);
  if (!entry) return 'unreadable, cut short, not of this format, or its tables do not match their crc32';
  if (crc32(await readFile(join(dir, CANDIDATES))) !== entry.header.crc32.candidates) return 'its candidates do not match their crc32';
  return undefined;
}

interface Entry {
  header: Header;
  section: (s: Section) => Buffer;
}

async function readEntry(dir: string): Promise<Entry | undefined> {
  let file: Buffer;
  let size: number;
  try {
    [file, size] = await Promise.all([readFile(join(dir, TABLES)), stat(join(dir, CANDIDATES)).then((s) => s.size)]);
  } catch {
    return undefined;
  }
  const length = file.length >= 4 ? file.readUInt32LE(0) : Infinity;
  if (4 + length > file.length) return undefined;
  let header: unknown;
  try {
    header = JSON.parse(file.toString('utf8', 4, 4 + length));
  } catch {
    return undefined;
  }
  const body = file.subarray(4 + length);
  if (!placesSections(header, body.length) || header.bytes !== size || crc32(body) !== header.crc32.sections) return undefined;
  return { header, section: (s) => body.subarray(header.sections[s][0], header.sections[s][0] + header.sections[s][1]) };
}

function placesSections(h: unknown, bodyLength: number): h is Header {
  const x = h as Partial<Header> | null;
  if (typeof x?.bytes !== 'number' || typeof x.crc32?.candidates !== 'number' || typeof x.crc32.sections !== 'number' || typeof x.sections !== 'object') return false;
  return SECTIONS.every((s) => {
    const at = x.sections![s];
    return Array.isArray(at) && Number.isInteger(at[0]) && Number.isInteger(at[1]) && at[0] >= 0 && at[1] >= 0 && at[0] + at[1] <= bodyLength;
  });
}

/** A string table read in place: `find` and `prefixed` compare bytes, decoding only what they return. */
function strings(text: Buffer, at: Buffer) {
  const count = at.length / 4 - 1;
  const start = (i: number) => at.readUInt32LE(i * 4);
  /** The first position whose string is not below `key` (compared as bytes). */
  const lowerBound = (key: Buffer) => {
    let lo = 0;
    let hi = count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (text.compare(key, 0, key.length, start(mid), start(mid + 1)) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return {
    count,
    get: (i: number) => text.toString('utf8', start(i), start(i + 1)),
    /** The position of `key`, or -1. */
    find(key: string): number {
      const k = Buffer.from(key);
      const i = lowerBound(k);
      return i < count && text.compare(k, 0, k.length, start(i), start(i + 1)) === 0 ? i : -1;
    },
    /** The positions of the strings that start with `prefix`: a run from where `prefix` would be. */
    prefixed(prefix: string): number[] {
      const k = Buffer.from(prefix);
      const startsWith = (i: number) => start(i + 1) - start(i) >= k.length && text.compare(k, 0, k.length, start(i), start(i) + k.length) === 0;
      const out: number[] = [];
      for (let i = lowerBound(k); i < count && startsWith(i); i++) out.push(i);
      return out;
    },
  };
}

function openIndex(e: Entry, candidatesPath: string, channel: string, rank: number): CandidateIndex {
  const names = strings(e.section('names'), e.section('namesAt'));
  const virtuals = strings(e.section('virtuals'), e.section('virtualsAt'));
  const sources = strings(e.section('sources'), e.section('sourcesAt'));
  const offsets = u32s(e.section('offsets'));
  const providers = lists(e.section('providersAt'), e.section('providers'));
  const built = lists(e.section('builtAt'), e.section('built'));
  const essential = u32s(e.section('essential'));
  let all: string[] | undefined;
  return {
    names: () => (all ??= Array.from({ length: names.count }, (_, i) => names.get(i))),
    candidates(name) {
      const i = names.find(name);
      if (i < 0) return [];
      let rows: Row[];
      try {
        rows = JSON.parse(readRange(candidatesPath, offsets.get(i), offsets.get(i + 1))) as Row[];
      } catch (err) {
        throw new StrataError('E_HASH', `the store's parsed index of channel "${channel}" is damaged (the entry of ${name}: ${(err as Error).message})`, 'run `strata verify`, which removes it; the next lock parses the index again');
      }
      return rows.map((r) => fromRow(name, r, channel, rank));
    },
    providerNames(virtual) {
      const i = virtuals.find(virtual);
      return i < 0 ? [] : providers.get(i).map(names.get);
    },
    essentialNames: () => Array.from({ length: essential.count }, (_, k) => names.get(essential.get(k))),
    namesFromSources(prefix) {
      const positions = new Set(sources.prefixed(prefix).flatMap(built.get));
      return [...positions].sort((a, b) => a - b).map(names.get);
    },
  };
}

/** A u32 array read in place. */
function u32s(b: Buffer) {
  return { count: b.length / 4, get: (i: number) => b.readUInt32LE(i * 4) };
}

/** Lists of positions read in place: n + 1 starts into one u32 array. */
function lists(starts: Buffer, items: Buffer) {
  const s = u32s(starts);
  const it = u32s(items);
  return { get: (i: number) => Array.from({ length: s.get(i + 1) - s.get(i) }, (_, k) => it.get(s.get(i) + k)) };
}

/** Bytes `start` to `end` of the file at `path`, as text; throws when they are not all there. */
function readRange(path: string, start: number, end: number): string {
  const buf = Buffer.allocUnsafe(end - start);
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, buf, 0, buf.length, start) !== buf.length) throw new Error('cut short');
  } finally {
    closeSync(fd);
  }
  return buf.toString('utf8');
}
