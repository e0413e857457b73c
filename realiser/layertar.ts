/**
 * The deterministic tar writer for OCI layers: the same set of entries always gives the same bytes,
 * whatever the order they are given in, the time, the machine or the files' on-disk timestamps.
 *
 * The 512-byte headers are written here by hand rather than through tar-stream's pack, because every
 * byte must be pinned: tar-stream leaves fields (devmajor/devminor formatting, PAX record order, how a
 * long name is split) to its own choices, which could change under us in any release. The format is
 * ustar; a PAX extended header (`x`) is added only to an entry that ustar cannot describe exactly: a path
 * that cannot be split into prefix/name, a non-ASCII path, link target, user or group name, a link target
 * over 100 bytes, a size of 8 GiB or more, an id over 2097151. No atime/ctime is ever written.
 *
 * Content streams from disk through a fixed 1 MiB staging buffer, so memory is bounded and the chunks
 * handed to the hash and to gzip do not depend on how reads happened to split.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';
import { once } from 'node:events';
import { Transform } from 'node:stream';
import type { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { ZlibOptions } from 'node:zlib';

export interface LayerEntry {
  /** Normalized relative path, e.g. `usr/bin/x`: no leading `/` or `./`, no trailing `/`, no `.`/`..` components. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  mode: number;
  uid: number;
  gid: number;
  /** Default `root`. */
  uname?: string;
  /** Default `root`. */
  gname?: string;
  /** A file's size; when absent it is taken from `source` or `content`. */
  size?: number;
  /** A symlink's target as written, or the layer path a hardlink points at. */
  linkname?: string;
  /** Absolute path of a file's content on disk (streamed). */
  source?: string;
  /**
   * Hex sha256 the content at `source` must have (recorded when it was written there). When given, the content is
   * hashed while it is copied into the tar and a mismatch throws `DamagedSource`.
   */
  sha256?: string;
  /** Small in-memory content (generated files). */
  content?: Buffer;
}

export interface LayerResult {
  /** `sha256:<hex>` of the uncompressed tar. */
  diffId: string;
  /** Size of the uncompressed tar. */
  size: number;
  gzip?: { digest: string; size: number };
}

/**
 * Fixed so that the gzip copy's digest is a function of the tar alone (for a given zlib build). Level 1:
 * on a 684 MB layer Node's zlib ran at 97 MB/s (level 6: 47 MB/s) for output only 8% larger, and these
 * blobs are mostly loaded locally, where speed matters more than size.
 */
export const LAYER_GZIP_LEVEL = 1;

/**
 * A file a layer is built from is not what was recorded of it (its size or its hash differ, or it is gone): the
 * cache it lives in was damaged. Its owner drops that entry and makes it again.
 */
export class DamagedSource extends Error {
  readonly source: string;
  readonly reason: string;
  constructor(source: string, reason: string) {
    super(`${source}: ${reason}`);
    this.name = 'DamagedSource';
    this.source = source;
    this.reason = reason;
  }
}

const BLOCK = 512;
const STAGE = 1 << 20;
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

/**
 * Writes `entries` as a deterministic tar to `out` (a file path; a stream, which is ended when the tar is whole; or
 * null: the tar is only hashed and measured) and, with `opts.gzip`, a gzip copy in the same pass. With
 * `opts.expect`, a tar that does not come out as that diffId and size is never completed: it throws `DamagedSource`
 * before ending a stream (its reader has every byte but the verdict) or removes a file. On any failure a given
 * stream is left neither ended nor destroyed: its owner destroys it with the error it wants its reader to see.
 * Entries are sorted by path bytewise, missing parent directories are added (0755 root:root), and a
 * hardlink set is rewritten so that its bytewise-first path carries the content (an extractor needs the
 * target before the link). Caller bugs (a duplicate or malformed path, a parent that is not a directory,
 * a file whose content does not match its size) throw a plain Error.
 */
export async function writeLayerTar(
  entries: LayerEntry[],
  out: string | Writable | null,
  opts: { mtime: number; gzip?: string; expect?: { diffId: string; size: number } },
): Promise<LayerResult> {
  if (!Number.isInteger(opts.mtime) || opts.mtime < 0 || opts.mtime > MAX_OCTAL_11) {
    throw new Error(`layer mtime must be a whole number of seconds in ustar range, got ${opts.mtime}`);
  }
  const planned = planEntries(entries);
  const sizes = await Promise.all(planned.map((e) => contentSize(e)));

  const sink = new StagedSink(out, opts.gzip, opts.expect);
  const buf = Buffer.allocUnsafe(STAGE);
  try {
    for (let i = 0; i < planned.length; i++) {
      const e = planned[i]!;
      const size = sizes[i]!;
      for (const block of headerBlocks(e, size, opts.mtime)) await sink.write(block);
      if (e.type === 'file' && size > 0) {
        await writeContent(e, size, sink, buf);
        const pad = (BLOCK - (size % BLOCK)) % BLOCK;
        if (pad > 0) await sink.write(Buffer.alloc(pad));
      }
    }
    await sink.write(Buffer.alloc(2 * BLOCK));
    return await sink.finish();
  } catch (e) {
    await sink.discard();
    throw e;
  }
}

/** Resolves when `w` drains, rejects when it fails or closes first (a reader that went away). */
function drained(w: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      w.off('drain', ok);
      w.off('error', done);
      w.off('close', closed);
      if (err) reject(err);
      else resolve();
    };
    const ok = () => done();
    const closed = () => done(new Error('the layer stream was closed by its reader'));
    w.on('drain', ok);
    w.on('error', done);
    w.on('close', closed);
  });
}

interface PlannedEntry extends LayerEntry {
  uname: string;
  gname: string;
  pathBytes: Buffer;
}

function planEntries(input: LayerEntry[]): PlannedEntry[] {
  const byPath = new Map<string, PlannedEntry>();
  for (const e of input) {
    checkPath(e.path);
    if (byPath.has(e.path)) throw new Error(`duplicate layer path '${e.path}'`);
    if ((e.type === 'symlink' || e.type === 'hardlink') && !e.linkname) throw new Error(`${e.type} '${e.path}' has no linkname`);
    if (e.type === 'hardlink') checkPath(e.linkname!);
    if (!Number.isInteger(e.uid) || e.uid < 0 || !Number.isInteger(e.gid) || e.gid < 0) {
      throw new Error(`layer path '${e.path}' has an invalid uid/gid`);
    }
    byPath.set(e.path, {
      ...e,
      mode: e.mode & 0o7777,
      uname: e.uname ?? 'root',
      gname: e.gname ?? 'root',
      pathBytes: Buffer.from(e.path, 'utf8'),
    });
  }
  for (const e of [...byPath.values()]) {
    for (let d = parentOf(e.path); d !== ''; d = parentOf(d)) {
      const p = byPath.get(d);
      if (p) {
        if (p.type !== 'dir') throw new Error(`layer path '${e.path}' is inside '${d}', which is a ${p.type}`);
        continue;
      }
      byPath.set(d, { path: d, type: 'dir', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root', pathBytes: Buffer.from(d, 'utf8') });
    }
  }
  canonicalizeHardlinks(byPath);
  return [...byPath.values()].sort((a, b) => Buffer.compare(a.pathBytes, b.pathBytes));
}

function checkPath(path: string): void {
  if (path === '' || path.includes('\0') || path.startsWith('/') || path.endsWith('/')) {
    throw new Error(`malformed layer path ${JSON.stringify(path)}`);
  }
  for (const c of path.split('/')) {
    if (c === '' || c === '.' || c === '..') throw new Error(`malformed layer path ${JSON.stringify(path)}`);
  }
}

/** The parent of a relative member path (`a/b/c` -> `a/b`, `a` -> ``). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/**
 * Groups every hardlink with the regular file it finally points at (when that file is in this layer) and
 * makes the bytewise-first path of the group the file, every other path a hardlink to it. Hardlinks to
 * paths outside this layer are left as given.
 */
function canonicalizeHardlinks(byPath: Map<string, PlannedEntry>): void {
  const groups = new Map<string, PlannedEntry[]>();
  for (const e of byPath.values()) {
    if (e.type !== 'hardlink') continue;
    let target = e.linkname!;
    const seen = new Set<string>([e.path]);
    for (let t = byPath.get(target); t?.type === 'hardlink'; t = byPath.get(target)) {
      if (seen.has(t.path)) throw new Error(`hardlink cycle through '${t.path}'`);
      seen.add(t.path);
      target = t.linkname!;
    }
    const file = byPath.get(target);
    if (!file) continue;
    if (file.type !== 'file') throw new Error(`hardlink '${e.path}' points at '${target}', which is a ${file.type}`);
    const group = groups.get(target) ?? [file];
    group.push(e);
    groups.set(target, group);
  }
  for (const group of groups.values()) {
    const file = group[0]!;
    const primary = group.reduce((a, b) => (Buffer.compare(a.pathBytes, b.pathBytes) <= 0 ? a : b));
    for (const member of group) {
      const { path, pathBytes } = member;
      if (member === primary) {
        byPath.set(path, { ...file, path, pathBytes });
      } else {
        const link: PlannedEntry = { ...file, path, pathBytes, type: 'hardlink', linkname: primary.path };
        delete link.source;
        delete link.content;
        delete link.size;
        delete link.sha256;
        byPath.set(path, link);
      }
    }
  }
}

async function contentSize(e: PlannedEntry): Promise<number> {
  if (e.type !== 'file') return 0;
  let actual: number;
  if (e.content !== undefined) actual = e.content.length;
  else if (e.source !== undefined) {
    try {
      actual = (await stat(e.source)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DamagedSource(e.source, 'the file is gone');
      throw err;
    }
  } else actual = 0;
  if (e.size !== undefined && e.size !== actual) {
    if (e.source !== undefined) throw new DamagedSource(e.source, `${actual} bytes, ${e.size} recorded`);
    throw new Error(`layer file '${e.path}' declares ${e.size} bytes but its content has ${actual}`);
  }
  return actual;
}

async function writeContent(e: PlannedEntry, size: number, sink: StagedSink, buf: Buffer): Promise<void> {
  if (e.content !== undefined) {
    await sink.write(e.content);
    return;
  }
  // Read through one buffer per layer, not a stream per file: a stream's own 1 MiB buffer for each of a layer's
  // many small files was most of a realise's garbage collection.
  const hash = e.sha256 !== undefined ? createHash('sha256') : undefined;
  const fh = await open(e.source!, 'r');
  let n = 0;
  try {
    for (;;) {
      // One byte more than is left, so that a file that grew is seen.
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - n + 1), null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > size) break;
      const chunk = buf.subarray(0, bytesRead);
      hash?.update(chunk);
      await sink.write(chunk);
    }
  } finally {
    await fh.close();
  }
  if (n !== size) throw new DamagedSource(e.source!, `changed while it was written into a layer (${size} bytes expected)`);
  if (hash) {
    const got = hash.digest('hex');
    if (got !== e.sha256) throw new DamagedSource(e.source!, `its content hashes to ${got.slice(0, 12)}…, ${e.sha256!.slice(0, 12)}… recorded`);
  }
}

// ---- headers --------------------------------------------------------------------------------------

const TYPEFLAG = { file: '0', hardlink: '1', symlink: '2', dir: '5' } as const;

function isAscii(s: string): boolean {
  return /^[\x01-\x7f]*$/.test(s);
}

/** Splits a name into ustar prefix (<= 155 bytes) and name (<= 100 bytes) at a `/`, or returns undefined. */
function splitUstar(name: string): { prefix: string; name: string } | undefined {
  if (name.length <= 100) return { prefix: '', name };
  const i = name.lastIndexOf('/', Math.min(name.length - 2, 155));
  if (i <= 0 || name.length - i - 1 > 100) return undefined;
  return { prefix: name.slice(0, i), name: name.slice(i + 1) };
}

/** ASCII stand-in for a field whose real value travels in a PAX record. */
function fallback(s: string, max: number): string {
  return s.replace(/[^\x01-\x7f]/g, '_').slice(0, max);
}

function headerBlocks(e: PlannedEntry, size: number, mtime: number): Buffer[] {
  const tarName = e.type === 'dir' ? `${e.path}/` : e.path;
  const linkname = e.type === 'symlink' || e.type === 'hardlink' ? e.linkname! : '';
  const pax: [string, string][] = [];

  let split = isAscii(tarName) ? splitUstar(tarName) : undefined;
  if (!split) {
    pax.push(['path', tarName]);
    split = { prefix: '', name: fallback(tarName, 100) };
  }
  let linkField = linkname;
  if (!isAscii(linkname) || linkname.length > 100) {
    pax.push(['linkpath', linkname]);
    linkField = fallback(linkname, 100);
  }
  let sizeField = size;
  if (size > MAX_OCTAL_11) {
    pax.push(['size', String(size)]);
    sizeField = 0;
  }
  let uidField = e.uid;
  if (e.uid > MAX_OCTAL_7) {
    pax.push(['uid', String(e.uid)]);
    uidField = 0;
  }
  let gidField = e.gid;
  if (e.gid > MAX_OCTAL_7) {
    pax.push(['gid', String(e.gid)]);
    gidField = 0;
  }
  let unameField = e.uname;
  if (!isAscii(e.uname) || e.uname.length > 31) {
    pax.push(['uname', e.uname]);
    unameField = fallback(e.uname, 31);
  }
  let gnameField = e.gname;
  if (!isAscii(e.gname) || e.gname.length > 31) {
    pax.push(['gname', e.gname]);
    gnameField = fallback(e.gname, 31);
  }

  const main = ustarHeader({
    name: split.name,
    prefix: split.prefix,
    mode: e.mode,
    uid: uidField,
    gid: gidField,
    size: sizeField,
    mtime,
    typeflag: TYPEFLAG[e.type],
    linkname: linkField,
    uname: unameField,
    gname: gnameField,
  });
  if (pax.length === 0) return [main];

  const body = Buffer.from(pax.map(([k, v]) => paxRecord(k, v)).join(''), 'utf8');
  const base = fallback(e.path.slice(e.path.lastIndexOf('/') + 1), 100 - 'PaxHeaders/'.length);
  const paxHeader = ustarHeader({
    name: `PaxHeaders/${base}`,
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime,
    typeflag: 'x',
    linkname: '',
    uname: '',
    gname: '',
  });
  const padded = Buffer.alloc(Math.ceil(body.length / BLOCK) * BLOCK);
  body.copy(padded);
  return [paxHeader, padded, main];
}

/** One PAX record, `<len> <key>=<value>\n`, where `<len>` counts the whole record including itself. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest, 'utf8');
  let len = restLen + String(restLen).length;
  if (String(len).length !== String(restLen).length) len = restLen + String(len).length;
  return `${len}${rest}`;
}

interface UstarFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
}

/** Numeric fields are zero-padded octal ending in NUL; the checksum is six digits, NUL, space. */
function ustarHeader(f: UstarFields): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(f.name, 0, 100, 'ascii');
  octal(h, 100, 8, f.mode);
  octal(h, 108, 8, f.uid);
  octal(h, 116, 8, f.gid);
  octal(h, 124, 12, f.size);
  octal(h, 136, 12, f.mtime);
  h.write('        ', 148, 8, 'ascii');
  h.write(f.typeflag, 156, 1, 'ascii');
  h.write(f.linkname, 157, 100, 'ascii');
  h.write('ustar\x0000', 257, 8, 'ascii');
  h.write(f.uname, 265, 32, 'ascii');
  h.write(f.gname, 297, 32, 'ascii');
  octal(h, 329, 8, 0);
  octal(h, 337, 8, 0);
  h.write(f.prefix, 345, 155, 'ascii');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

function octal(h: Buffer, offset: number, width: number, n: number): void {
  const s = n.toString(8).padStart(width - 1, '0');
  if (s.length > width - 1) throw new Error(`tar field overflow: ${n} in ${width} bytes`);
  h.write(`${s}\0`, offset, width, 'ascii');
}

// ---- output ----------------------------------------------------------------------------------------

/** Hashes and writes the tar (and feeds gzip) in fixed STAGE-sized chunks, awaiting backpressure. */
class StagedSink {
  private readonly stage = Buffer.allocUnsafe(STAGE);
  private fill = 0;
  private size = 0;
  private readonly hash = createHash('sha256');
  private readonly out: WriteStream | Writable | undefined;
  private readonly gz?: { zip: Writable; done: Promise<void>; hash: ReturnType<typeof createHash>; size: number; path: string };
  private failure: Error | undefined;
  private readonly outPath: string | undefined;
  private readonly expect: { diffId: string; size: number } | undefined;

  constructor(out: string | Writable | null, gzipPath: string | undefined, expect?: { diffId: string; size: number }) {
    this.outPath = typeof out === 'string' ? out : undefined;
    this.out = typeof out === 'string' ? createWriteStream(out, { highWaterMark: 4 * STAGE }) : (out ?? undefined);
    this.expect = expect;
    this.out?.on('error', (e: Error) => {
      this.failure ??= e;
    });
    if (gzipPath !== undefined) {
      const zip = createGzip({ level: LAYER_GZIP_LEVEL, writableHighWaterMark: 4 * STAGE, chunkSize: 256 * 1024 } as ZlibOptions);
      const gz = { zip, hash: createHash('sha256'), size: 0, path: gzipPath, done: Promise.resolve() };
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          gz.hash.update(chunk);
          gz.size += chunk.length;
          cb(null, chunk);
        },
      });
      gz.done = pipeline(zip, counter, createWriteStream(gzipPath));
      gz.done.catch((e: Error) => {
        this.failure ??= e;
      });
      this.gz = gz;
    }
  }

  async write(data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const n = Math.min(STAGE - this.fill, data.length - off);
      data.copy(this.stage, this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === STAGE) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.fill === 0) return;
    const chunk = Buffer.from(this.stage.subarray(0, this.fill));
    this.fill = 0;
    this.hash.update(chunk);
    this.size += chunk.length;
    const waits: Promise<unknown>[] = [];
    if (this.out && !this.out.write(chunk)) waits.push(drained(this.out));
    if (this.gz && !this.gz.zip.write(chunk)) waits.push(once(this.gz.zip, 'drain'));
    await Promise.all(waits);
    if (this.failure) throw this.failure;
  }

  async finish(): Promise<LayerResult> {
    await this.flush();
    const result: LayerResult = { diffId: `sha256:${this.hash.digest('hex')}`, size: this.size };
    const want = this.expect;
    if (want && (want.diffId !== result.diffId || want.size !== result.size)) {
      throw new DamagedSource('the layer made again', `it came out as ${result.diffId} (${result.size} bytes), its record says ${want.diffId} (${want.size} bytes)`);
    }
    if (this.out) {
      this.out.end();
      if (this.outPath !== undefined) await once(this.out, 'close');
      else await finished(this.out, { readable: false });
    }
    if (this.failure) throw this.failure;
    if (this.gz) {
      this.gz.zip.end();
      await this.gz.done;
      result.gzip = { digest: `sha256:${this.gz.hash.digest('hex')}`, size: this.gz.size };
    }
    return result;
  }

  /** Stops every stream but a given one (its owner ends it) and removes the partial outputs. */
  async discard(): Promise<void> {
    if (this.outPath !== undefined) this.out?.destroy();
    if (this.gz) this.gz.zip.destroy();
    await this.gz?.done.catch(() => {});
    if (this.outPath !== undefined) await unlink(this.outPath).catch(() => {});
    if (this.gz) await unlink(this.gz.path).catch(() => {});
  }
}
