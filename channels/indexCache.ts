/**
 * The parsed form of one verified `Packages` index, as the store's `indexes` cache keeps it (derived data: see
 * channels/channel.ts for its key), in a shape that a lock reads without decoding the whole index. An entry is a
 * directory of two files:
 *
 *   candidates   for each name of the name table, in its order, one JSON array of the rows (ROW) of that name's
 *                candidates, in index order
 *   names.json   the tables: `names` (sorted, code-unit order) with `offsets`, the byte range of each name's array
 *                in `candidates` (names.length + 1 offsets); `virtuals` (sorted) with `providers`, for each virtual
 *                name the names (as positions in `names`) with a candidate that provides it; `essential`, the names
 *                with an Essential candidate; `sources` (sorted) with `built`, the names each source package builds;
 *                `bytes` and `crc32` of `candidates`
 *
 * Opening an entry reads both files and checks their shapes and sizes; an entry that does not pass reads as missing
 * (its owner parses the index again). `checkIndexCache` also checks the candidates' crc32, for `strata verify`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { StrataError } from '../errors.ts';
import { parseProvides } from '../debian/relation.ts';
import { cmp } from '../util/order.ts';
import type { Candidate, CandidateIndex } from '../model.ts';

const NAMES = 'names.json';
const CANDIDATES = 'candidates';

interface Tables {
  bytes: number;
  crc32: number;
  names: string[];
  offsets: number[];
  virtuals: string[];
  providers: number[][];
  essential: number[];
  sources: string[];
  built: number[][];
}

/**
 * A candidate's fields as one row, the name, channel and rank left out (the entry's key and the reader give them);
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
  const names = [...groups.keys()].sort(cmp);
  const position = new Map(names.map((n, i) => [n, i]));
  const offsets = [0];
  const texts = names.map((n) => {
    const text = JSON.stringify(groups.get(n)!.map(toRow));
    offsets.push(offsets[offsets.length - 1]! + Buffer.byteLength(text));
    return text;
  });
  const blob = Buffer.from(texts.join(''));
  const virtual = new Map<string, Set<number>>();
  const sources = new Map<string, Set<number>>();
  const essential = new Set<number>();
  for (const c of candidates) {
    const at = position.get(c.name)!;
    for (const p of parseProvides(c.provides)) addTo(virtual, p.name, at);
    addTo(sources, c.source, at);
    if (c.essential) essential.add(at);
  }
  const [virtuals, providers] = table(virtual);
  const [sourceNames, built] = table(sources);
  const tables: Tables = { bytes: blob.length, crc32: crc32(blob), names, offsets, virtuals, providers, essential: [...essential].sort((a, b) => a - b), sources: sourceNames, built };
  await writeFile(join(dir, CANDIDATES), blob);
  await writeFile(join(dir, NAMES), JSON.stringify(tables));
}

function addTo(m: Map<string, Set<number>>, key: string, at: number): void {
  const s = m.get(key);
  if (s) s.add(at);
  else m.set(key, new Set([at]));
}

/** A map as its sorted keys and, for each, its sorted positions. */
function table(m: Map<string, Set<number>>): [string[], number[][]] {
  const keys = [...m.keys()].sort(cmp);
  return [keys, keys.map((k) => [...m.get(k)!].sort((a, b) => a - b))];
}

/** The entry in `dir` as the candidates of channel `channel` (rank `rank`); undefined when it is missing or does not pass. */
export async function readIndexCache(dir: string, channel: string, rank: number): Promise<CandidateIndex | undefined> {
  const read = await readEntry(dir);
  return read && openIndex(read.tables, read.blob, channel, rank);
}

/** Why the entry in `dir` cannot be used (missing, cut short, damaged), or undefined when it can. */
export async function checkIndexCache(dir: string): Promise<string | undefined> {
  const read = await readEntry(dir);
  if (!read) return 'unreadable, cut short or not of this format';
  return crc32(read.blob) === read.tables.crc32 ? undefined : 'its candidates do not match their crc32';
}

async function readEntry(dir: string): Promise<{ tables: Tables; blob: Buffer } | undefined> {
  let tables: unknown;
  let blob: Buffer;
  try {
    [tables, blob] = await Promise.all([readFile(join(dir, NAMES), 'utf8').then((t) => JSON.parse(t) as unknown), readFile(join(dir, CANDIDATES))]);
  } catch {
    return undefined;
  }
  return wellFormed(tables, blob.length) ? { tables, blob } : undefined;
}

function wellFormed(t: unknown, bytes: number): t is Tables {
  if (typeof t !== 'object' || t === null) return false;
  const x = t as Partial<Tables>;
  const arrays = [x.names, x.offsets, x.virtuals, x.providers, x.essential, x.sources, x.built];
  if (!arrays.every(Array.isArray) || x.bytes !== bytes || typeof x.crc32 !== 'number') return false;
  return x.offsets!.length === x.names!.length + 1 && x.offsets![x.names!.length] === bytes && x.providers!.length === x.virtuals!.length && x.built!.length === x.sources!.length;
}

function openIndex(t: Tables, blob: Buffer, channel: string, rank: number): CandidateIndex {
  const namesAt = (positions: readonly number[]) => positions.map((i) => t.names[i]!);
  return {
    names: () => t.names,
    candidates(name) {
      const i = find(t.names, name);
      if (i < 0) return [];
      let rows: Row[];
      try {
        rows = JSON.parse(blob.toString('utf8', t.offsets[i], t.offsets[i + 1])) as Row[];
      } catch (e) {
        throw new StrataError('E_HASH', `the store's parsed index of channel "${channel}" is damaged (the entry of ${name}: ${(e as Error).message})`, 'run `strata verify`, which removes it; the next lock parses the index again');
      }
      return rows.map((r) => fromRow(name, r, channel, rank));
    },
    providerNames(virtual) {
      const i = find(t.virtuals, virtual);
      return i < 0 ? [] : namesAt(t.providers[i]!);
    },
    essentialNames: () => namesAt(t.essential),
    namesFromSources(accept) {
      const positions = new Set<number>();
      t.sources.forEach((s, i) => {
        if (accept(s)) for (const p of t.built[i]!) positions.add(p);
      });
      return namesAt([...positions].sort((a, b) => a - b));
    },
  };
}

/** The position of `key` in the sorted `list`, or -1. */
function find(list: readonly string[], key: string): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = cmp(list[mid]!, key);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
