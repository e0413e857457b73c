/**
 * The store: a content-addressed cache of downloaded bytes (channel indexes, .debs, Release files),
 * and the one place bytes are verified and written into it.
 *
 * Layout under the root:
 *   blobs/sha256/<hex>   complete, verified blobs only (written to tmp/, fsynced, then renamed in)
 *   tmp/                 in-progress downloads and scratch directories; what a dead writer left is removed
 *                        when a store is opened (store/leftovers.ts: at once when its pid is dead on this boot and
 *                        PID namespace, else after a day)
 *   stamps/              verified stamps: <hex>.json holds the (size, mtime, ctime, inode) a blob had when it was
 *                        last hashed and found whole
 *   <namespace>/         derived data (store/cache.ts): channels/ indexes/ unpacked/ layers/ run/ rootfs/
 *
 * Nothing outside store/ builds a path under the root: blobs enter through fetch, put and adopt, derived data
 * through `cache(namespace)`.
 *
 * Trust decisions:
 * - A blob's name is its sha256; a blob is only ever created by an atomic rename of a file whose hash
 *   was computed while it was written, so `has` never returns a partial or unverified file.
 * - A hash mismatch, or a body whose size contradicts the expected size, is fatal (E_HASH) and other
 *   mirrors are NOT tried: a mirror serving bytes its signed index does not vouch for is either
 *   tampered with or mid-sync, and the user must know rather than have it papered over.
 * - Bytes in the store can still be damaged later (a disk, a stray write). `check` is how a blob is taken out of the
 *   store for use: it compares the blob's stat with its verified stamp and re-hashes it when they differ (any write
 *   through the filesystem changes mtime or ctime), or always with `rehash`; a blob this process wrote or hashed
 *   itself counts as verified. A damaged blob is dropped, so its owner fetches or makes it again. `strata verify`
 *   re-hashes everything.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StrataError } from '../errors.ts';
import { CACHE_NAMESPACES, openCache, removeAll, type CacheNamespace, type DerivedCache } from './cache.ts';
import { isLeftover, ownerTag } from './leftovers.ts';
import { defaultCacheDir } from './cacheDir.ts';
import { registerUse, type Used } from './active.ts';
import {
  backoffDelay,
  defaultRetryPolicy,
  isTransientStatus,
  NetworkError,
  openGet,
  redact,
  sleep,
  type OpenResponse,
  type RetryPolicy,
} from './http.ts';

export { httpGet, type RetryPolicy } from './http.ts';
export type { CacheNamespace, DerivedCache, JsonEntry } from './cache.ts';

/** What `check` found: a whole blob, no blob, or a damaged one (now dropped from the store). */
export type BlobCheck = { state: 'ok'; path: string } | { state: 'missing' } | { state: 'damaged'; reason: string };

export interface FetchRequest {
  /** Full URLs of the same bytes, tried in order. */
  urls: string[];
  sha256: string;
  /** Expected size in bytes, when the index that vouches for the hash gives it. */
  size?: number;
  /** What is being fetched, for messages, e.g. `libc6 2.36-9`. */
  label: string;
  /** Called with each increment of new bytes; the increments sum to the blob's size. Not called for a blob already present. */
  onBytes?: (n: number) => void;
  /** Called once with the URL that served the bytes (not called for a blob already present). */
  onServedBy?: (url: string) => void;
  /** Request headers sent with every attempt (a registry's Authorization, Accept); Range and If-Range are the store's. */
  headers?: Record<string, string>;
  /**
   * What vouches for `sha256` and `size`, for the messages when the bytes differ or are gone: `index` (default), a
   * signed Release or Packages index; `lock`, strata.lock, which may have been edited and names versions a mirror
   * may since have dropped; `manifest`, an image manifest from a registry (whose own digest was checked).
   */
  vouchedBy?: 'index' | 'lock' | 'manifest';
}

export interface Store {
  root: string;
  /** Path of a blob if present (and its size matches when given); undefined if absent. Never returns a partial file. */
  has(sha256: string, size?: number): Promise<string | undefined>;
  /**
   * Downloads from the first URL that works, verifying size and sha256 while streaming into a temp file in
   * the store, then fsync and atomic rename to blobs/sha256/<hex>. Returns the blob path. Each URL gets
   * `retries` extra attempts with exponential backoff on transient failures (resuming with a Range
   * request where the server allows); 404, 403 and other final statuses move to the next URL at once.
   * Throws E_HASH on a hash or size mismatch (no other URL is tried), E_FETCH when no URL served the
   * bytes, E_DISK when the store's filesystem is full. Concurrent calls for the same sha256 share one
   * download. A blob already present is returned at once without network.
   */
  fetch(req: FetchRequest): Promise<string>;
  /** Puts bytes in the store by hash; when `sha256` is given the bytes must match it (E_HASH otherwise). */
  put(data: Buffer, sha256?: string): Promise<string>;
  /** A fresh scratch directory inside the store's filesystem (for temp files that will be renamed in); the caller removes it. */
  tmpDir(): Promise<string>;
  /**
   * Moves `file` (in a `tmpDir()`, its sha256 computed while it was written) into blobs/ under that hash: fsync,
   * then an atomic rename. The caller vouches for the hash. Returns the blob path.
   */
  adopt(file: string, sha256: string): Promise<string>;
  /** The derived-data cache of one namespace (one temp-name scheme, one fsync-and-rename policy). */
  cache(namespace: CacheNamespace): DerivedCache;
  /**
   * A blob taken out of the store for use, checked: whole when its stat matches its verified stamp (or this process
   * wrote or hashed it), else re-hashed; with `rehash` always re-hashed unless this process wrote or hashed it. A
   * blob of the wrong size or hash is dropped (left in place with `keep`) and reported as damaged; the caller
   * fetches or makes it again.
   */
  check(sha256: string, size?: number, o?: { rehash?: boolean; keep?: boolean }): Promise<BlobCheck>;
  /** Removes a blob (and its stamp), e.g. one whose bytes its consumer found damaged. */
  drop(sha256: string): Promise<void>;
  /** The hex names of every blob in the store. */
  blobs(): Promise<string[]>;
  /** Removes the stamps of blobs no longer in the store; returns how many. */
  pruneStamps(): Promise<number>;
  /** What this process has touched in the store so far (blobs and cache entries): what `strata gc` records as used. */
  used(): Used;
}

export type StoreOptions = Partial<RetryPolicy> & {
  /** Do not register this process as a user of the store (store/active.ts): for `strata gc` itself. */
  unregistered?: boolean;
};

export { defaultCacheDir };

const WRITE_BATCH = 1 << 20;

function checkHex(sha256: string): string {
  const hex = sha256.startsWith('sha256:') ? sha256.slice(7) : sha256;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new TypeError(`not a sha256 hex digest: ${JSON.stringify(sha256)}`);
  return hex.toLowerCase();
}

export function isDiskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function diskFull(root: string, what: string): StrataError {
  return new StrataError(
    'E_DISK',
    `no space left on the device holding the store (${root}) while writing ${what}`,
    'free some space (or point STRATA_CACHE_DIR at a larger filesystem) and run again; nothing in the store was corrupted',
  );
}

/**
 * The same message for a write outside the store (an image layout or archive, strata.lock, standard output): E_DISK
 * naming where it was written. Callers undo what they wrote, so the hint can say nothing half-written is left.
 */
export function diskFullAt(where: string, what: string): StrataError {
  return new StrataError(
    'E_DISK',
    `no space left on the device holding ${where} while writing ${what}`,
    'free some space (or write to a larger filesystem) and run again; nothing half-written was left there',
  );
}

/** Runs a filesystem operation, turning a full disk (ENOSPC, EDQUOT) into E_DISK naming the store and what was written. */
export async function onDisk<T>(root: string, what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    if (isDiskFull(e)) throw diskFull(root, what);
    throw e;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (e) {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
    if (!['EISDIR', 'EINVAL', 'EBADF', 'EPERM'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    await fh?.close();
  }
}

async function removeStale(tmp: string, now: number): Promise<void> {
  let names: string[];
  try {
    names = await readdir(tmp);
  } catch {
    return;
  }
  for (const name of names) {
    const p = join(tmp, name);
    try {
      const st = await lstat(p);
      if (isLeftover(name, st.mtimeMs, now)) await rm(p, { recursive: true, force: true });
    } catch {
      // Removed by another process meanwhile.
    }
  }
}

/** A stat's identity as a verified stamp: any write through the filesystem changes mtime or ctime. */
function stampOf(st: BigIntStats): string {
  return `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}`;
}

async function hashOpen(fh: FileHandle): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let pos = 0; ; ) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return hash.digest('hex');
}

/** Opens (creating if needed) the store at `root`, removing what dead writers left in tmp/ and in the caches. */
export async function openStore(root: string = defaultCacheDir(), opts: StoreOptions = {}): Promise<Store> {
  root = resolve(root);
  const { unregistered, ...retry } = opts;
  const policy: RetryPolicy = { ...defaultRetryPolicy, ...definedOnly(retry) };
  const blobs = join(root, 'blobs', 'sha256');
  const tmp = join(root, 'tmp');
  await onDisk(root, 'the store layout', async () => {
    await mkdir(blobs, { recursive: true });
    await mkdir(tmp, { recursive: true });
  });
  if (!unregistered) await onDisk(root, 'its register of users (active/)', async () => registerUse(root));
  // What this process touches, for `strata gc`'s roots (engine/gc.ts).
  const touchedBlobs = new Set<string>();
  const touched = new Map<CacheNamespace, Set<string>>();
  const touchBlob = (sha256: string) => {
    touchedBlobs.add(checkHex(sha256));
  };
  const caches = new Map<CacheNamespace, DerivedCache>();
  function cache(ns: CacheNamespace): DerivedCache {
    let c = caches.get(ns);
    if (!c) {
      const keys = new Set<string>();
      touched.set(ns, keys);
      c = tracked(openCache(join(root, ns), (what, op) => onDisk(root, `${ns}/${what}`, op)), (key) => keys.add(key.split('/')[0]!));
      caches.set(ns, c);
    }
    return c;
  }
  function used(): Used {
    const entries: Record<string, string[]> = {};
    for (const [ns, keys] of touched) if (keys.size > 0) entries[ns] = [...keys].sort();
    return { blobs: [...touchedBlobs].sort(), entries };
  }
  const now = Date.now();
  const stamps = openCache(join(root, 'stamps'), (what, op) => onDisk(root, `stamps/${what}`, op));
  await Promise.all([removeStale(tmp, now), stamps.sweep(now), ...CACHE_NAMESPACES.map((ns) => cache(ns).sweep(now))]);

  const inflight = new Map<string, Promise<string>>();
  /** Blobs this process wrote or hashed, by their stamp then. */
  const verifiedHere = new Map<string, string>();
  const blobPath = (hex: string): string => join(blobs, hex);
  const tmpName = (hex: string): string => join(tmp, `${hex}.${process.pid}.${ownerTag()}.${randomBytes(4).toString('hex')}.part`);

  async function stamp(hex: string, st: BigIntStats): Promise<void> {
    const id = stampOf(st);
    verifiedHere.set(hex, id);
    await stamps.writeJson(hex, id, { durable: false }).catch(() => {});
  }

  async function drop(sha256: string): Promise<void> {
    const hex = checkHex(sha256);
    verifiedHere.delete(hex);
    await removeAll(blobPath(hex));
    await stamps.remove(hex);
  }

  async function check(sha256: string, size?: number, o: { rehash?: boolean; keep?: boolean } = {}): Promise<BlobCheck> {
    const hex = checkHex(sha256);
    const p = blobPath(hex);
    let fh: FileHandle;
    try {
      fh = await open(p, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'missing' };
      throw e;
    }
    let reason: string | undefined;
    let ino: bigint;
    try {
      const st = await fh.stat({ bigint: true });
      ino = st.ino;
      const id = stampOf(st);
      if (!st.isFile()) reason = 'not a regular file';
      else if (size !== undefined && st.size !== BigInt(size)) reason = `${st.size} bytes, ${size} expected`;
      else {
        if (verifiedHere.get(hex) === id) return { state: 'ok', path: p };
        if (!o.rehash && (await stamps.readJson<string>(hex)) === id) return { state: 'ok', path: p };
        const got = await hashOpen(fh);
        if (got === hex) {
          await stamp(hex, st);
          return { state: 'ok', path: p };
        }
        reason = `its bytes hash to ${got.slice(0, 12)}…`;
      }
    } finally {
      await fh.close();
    }
    // Drop what was checked, not a good copy another process renamed into place meanwhile.
    const now = await stat(p, { bigint: true }).catch(() => undefined);
    if (now && now.ino !== ino) return check(sha256, size, o);
    if (o.keep) {
      verifiedHere.delete(hex);
      await stamps.remove(hex);
    } else await drop(hex);
    return { state: 'damaged', reason };
  }

  async function listBlobs(): Promise<string[]> {
    return (await readdir(blobs)).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
  }

  async function pruneStamps(): Promise<number> {
    const have = new Set(await listBlobs());
    let n = 0;
    for (const key of (await stamps.list()).json) {
      if (have.has(key)) continue;
      await stamps.remove(key);
      n++;
    }
    return n;
  }

  async function has(sha256: string, size?: number): Promise<string | undefined> {
    const p = blobPath(checkHex(sha256));
    try {
      const st = await stat(p);
      if (!st.isFile() || (size !== undefined && st.size !== size)) return undefined;
      return p;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** fsync, close and rename a verified temp file into blobs/. */
  async function commit(fh: FileHandle, tmpPath: string, hex: string, what: string): Promise<string> {
    const dest = blobPath(hex);
    await onDisk(root, what, async () => {
      await fh.sync();
      await fh.close();
      await rename(tmpPath, dest);
      await fsyncDir(blobs);
    });
    await stamp(hex, await stat(dest, { bigint: true }));
    return dest;
  }

  async function put(data: Buffer, sha256?: string): Promise<string> {
    const got = createHash('sha256').update(data).digest('hex');
    if (sha256 !== undefined && checkHex(sha256) !== got) {
      throw new StrataError('E_HASH', `bytes put into the store do not match their hash: expected ${checkHex(sha256)}, received ${got}`);
    }
    const present = await has(got, data.length);
    if (present) return present;
    const tmpPath = tmpName(got);
    const what = `blob ${got}`;
    const fh = await onDisk(root, what, () => open(tmpPath, 'w', 0o644));
    try {
      await onDisk(root, what, () => fh.writeFile(data));
      return await commit(fh, tmpPath, got, what);
    } finally {
      await fh.close().catch(() => {});
      await rm(tmpPath, { force: true });
    }
  }

  async function adopt(file: string, sha256: string): Promise<string> {
    const hex = checkHex(sha256);
    const what = `blob ${hex}`;
    const fh = await onDisk(root, what, () => open(file, 'r+'));
    try {
      return await commit(fh, file, hex, what);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async function tmpDir(): Promise<string> {
    return onDisk(root, 'a scratch directory', async () => {
      await mkdir(tmp, { recursive: true });
      return mkdtemp(join(tmp, `scratch-${process.pid}-${ownerTag()}-`));
    });
  }

  async function fetch(req: FetchRequest): Promise<string> {
    const hex = checkHex(req.sha256);
    const present = await has(hex, req.size);
    if (present) return present;
    const running = inflight.get(hex);
    if (running) return running;
    const p = download(req, hex).finally(() => inflight.delete(hex));
    inflight.set(hex, p);
    return p;
  }

  async function download(req: FetchRequest, hex: string): Promise<string> {
    if (req.urls.length === 0) throw new StrataError('E_FETCH', `could not download ${req.label}: no URL to download from`);
    await onDisk(root, req.label, () => mkdir(tmp, { recursive: true }));
    const tmpPath = tmpName(hex);
    const fh = await onDisk(root, req.label, () => open(tmpPath, 'w', 0o644));
    const sink = new Sink(fh, root, req);
    const failures: string[] = [];
    const gone = new Set<string>();
    try {
      for (const url of req.urls) {
        const failure = await fromUrl(url, sink, req, hex, gone);
        if (failure === undefined) {
          const path = await commit(fh, tmpPath, hex, req.label);
          req.onServedBy?.(url);
          return path;
        }
        failures.push(failure);
        await sink.reset();
      }
    } finally {
      await fh.close().catch(() => {});
      await rm(tmpPath, { force: true });
    }
    if (req.vouchedBy === 'lock' && gone.size === req.urls.length) {
      throw new StrataError(
        'E_FETCH',
        `could not download ${req.label}: the mirror no longer has it (${failures.join('; ')})`,
        'mirrors drop superseded versions: run `strata lock` to lock the versions the mirror has now, or point the channel\'s url at a snapshot archive that keeps this one',
      );
    }
    throw new StrataError(
      'E_FETCH',
      `could not download ${req.label}: ${failures.join('; ')}`,
      'check the network and the mirror URLs; run the command again to retry',
    );
  }

  /**
   * Tries one URL with retries. Resolves undefined when the sink holds the whole verified blob, or the
   * reason this URL failed (adding it to `gone` when it answered 404 or 410); throws for fatal errors (E_HASH, E_DISK).
   */
  async function fromUrl(url: string, sink: Sink, req: FetchRequest, hex: string, gone: Set<string>): Promise<string | undefined> {
    let last = '';
    let validator: string | undefined;
    for (let attempt = 0; attempt <= policy.retries; attempt++) {
      const headers: Record<string, string> = { ...req.headers };
      if (sink.written > 0) {
        headers.range = `bytes=${sink.written}-`;
        if (validator) headers['if-range'] = validator;
      }
      let res: OpenResponse;
      try {
        res = await openGet(url, headers, policy);
      } catch (e) {
        const err = e instanceof NetworkError ? e : new NetworkError(`${redact(url)}: ${(e as Error).message}`, true);
        if (!err.transient) return err.message;
        last = err.message;
        if (attempt < policy.retries) await sleep(backoffDelay(policy, attempt + 1));
        continue;
      }
      const resumed = res.status === 206 && sink.written > 0 && contentRangeStart(res.headers['content-range']) === sink.written;
      if (res.status !== 200 && !resumed) {
        res.body.destroy();
        if (res.status === 206 || res.status === 416) {
          // A range the server could not honour as asked: start over from byte 0.
          await sink.reset();
          last = `${redact(url)}: HTTP ${res.status} to a resumed download`;
          continue;
        }
        last = `${redact(url)}: HTTP ${res.status}`;
        if (res.status === 404 || res.status === 410) gone.add(url);
        if (!isTransientStatus(res.status)) return last;
        if (attempt < policy.retries) await sleep(backoffDelay(policy, attempt + 1, res.headers['retry-after']));
        continue;
      }
      if (!resumed) await sink.reset();
      validator = strongValidator(res.headers);
      const declared = res.headers['content-length'];
      if (req.size !== undefined && declared !== undefined && sink.written + Number(declared) !== req.size) {
        res.body.destroy();
        throw sizeMismatch(req, url, `${sink.written + Number(declared)} bytes`);
      }
      const cut = await sink.take(res, url);
      if (cut !== undefined) {
        last = cut;
        if (attempt < policy.retries) await sleep(backoffDelay(policy, attempt + 1));
        continue;
      }
      if (req.size !== undefined && sink.written < req.size) {
        // No framing told us the body was cut short (no Content-Length): treat it as a dropped connection.
        last = `${redact(url)}: body ended after ${sink.written} of ${req.size} bytes`;
        if (attempt < policy.retries) await sleep(backoffDelay(policy, attempt + 1));
        continue;
      }
      const got = sink.digest();
      if (got !== hex) {
        if (req.vouchedBy === 'lock') {
          throw new StrataError('E_HASH', `${req.label}: the bytes from ${redact(url)} do not match the sha256 strata.lock records for it: the lock has ${hex}, the mirror sent ${got}`, LOCK_MISMATCH_HINT);
        }
        throw new StrataError(
          'E_HASH',
          `${req.label}: sha256 mismatch for ${redact(url)}: expected ${hex}, received ${got}`,
          req.vouchedBy === 'manifest'
            ? 'the registry served bytes the image manifest does not vouch for (damaged storage, or something between you and it changed them); nothing was stored; try again, or ask the registry\'s operator'
            : 'the mirror served bytes its signed index does not vouch for (mid-sync or tampered with); try again later or use another mirror',
        );
      }
      return undefined;
    }
    return last;
  }

  return {
    root,
    has: (sha256, size) => (touchBlob(sha256), has(sha256, size)),
    fetch: (req) => (touchBlob(req.sha256), fetch(req)),
    put: async (data, sha256) => {
      const p = await put(data, sha256);
      touchBlob(p.slice(-64));
      return p;
    },
    tmpDir,
    adopt: (file, sha256) => (touchBlob(sha256), adopt(file, sha256)),
    cache,
    check: (sha256, size, o) => (touchBlob(sha256), check(sha256, size, o)),
    drop,
    blobs: listBlobs,
    pruneStamps,
    used,
  };
}

/** A cache whose every keyed access is told to `touch` (removal aside). */
function tracked(c: DerivedCache, touch: (key: string) => void): DerivedCache {
  return {
    ...c,
    path: (key) => (touch(key), c.path(key)),
    readJson: (key) => (touch(key), c.readJson(key)),
    readEntry: (key, valid) => (touch(key), c.readEntry(key, valid)),
    writeJson: (key, value, o) => (touch(key), c.writeJson(key, value, o)),
    readJsonSync: (key) => (touch(key), c.readJsonSync(key)),
    writeJsonSync: (key, value) => (touch(key), c.writeJsonSync(key, value)),
    dir: (key, fill, o) => (touch(key), c.dir(key, fill, o)),
    dirSync: (key, fill) => (touch(key), c.dirSync(key, fill)),
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function contentRangeStart(h: string | undefined): number | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(h ?? '');
  return m ? Number(m[1]) : undefined;
}

/** An ETag that is not weak, else Last-Modified: what If-Range accepts to guarantee the same bytes. */
function strongValidator(h: Record<string, string | undefined>): string | undefined {
  const etag = h.etag;
  if (etag && !etag.startsWith('W/')) return etag;
  return h['last-modified'];
}

/** A lock's hash or size that the bytes contradict: the lock may have been edited, or the mirror changed the file. */
const LOCK_MISMATCH_HINT =
  'either strata.lock was edited (restore it from version control, or run `strata lock` to write it again from the signed indexes), or the mirror now serves other bytes for this file (mid-sync or tampered with: try again later or use another mirror); if `strata lock` records the same value again, the mirror is at fault';

function sizeMismatch(req: FetchRequest, url: string, got: string): StrataError {
  if (req.vouchedBy === 'lock') {
    return new StrataError('E_HASH', `${req.label}: the size of ${redact(url)} does not match strata.lock: the lock records ${req.size} bytes, the server sends ${got}`, LOCK_MISMATCH_HINT);
  }
  return new StrataError(
    'E_HASH',
    `${req.label}: size mismatch for ${redact(url)}: expected ${req.size} bytes, the server sends ${got}`,
    'the mirror served bytes its signed index does not vouch for (mid-sync or tampered with); try again later or use another mirror',
  );
}

/**
 * The temp file being downloaded into and the running hash of the bytes in it. `written` counts bytes
 * received and hashed; after `take` returns, all of them are on disk, so a retry can resume from there.
 */
class Sink {
  written = 0;
  private hash: Hash = createHash('sha256');
  private onDiskBytes = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private reported = 0;
  private readonly fh: FileHandle;
  private readonly root: string;
  private readonly req: FetchRequest;

  constructor(fh: FileHandle, root: string, req: FetchRequest) {
    this.fh = fh;
    this.root = root;
    this.req = req;
  }

  async reset(): Promise<void> {
    if (this.written === 0 && this.onDiskBytes === 0) return;
    await this.fh.truncate(0);
    this.written = 0;
    this.onDiskBytes = 0;
    this.pending = [];
    this.pendingBytes = 0;
    this.hash = createHash('sha256');
  }

  digest(): string {
    return this.hash.digest('hex');
  }

  /**
   * Streams a body into the file. Resolves undefined when the body ended normally, or the reason it was
   * cut short (a transient failure); throws E_HASH when it overruns the expected size, E_DISK on a full disk.
   */
  async take(res: OpenResponse, url: string): Promise<string | undefined> {
    const it = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    try {
      for (;;) {
        let next: IteratorResult<Buffer>;
        try {
          next = await it.next();
        } catch (e) {
          await this.flush();
          const msg = e instanceof NetworkError ? e.message : `${redact(url)}: ${(e as Error).message}`;
          return `${msg} after ${this.written} bytes`;
        }
        if (next.done) break;
        const chunk = next.value;
        if (this.req.size !== undefined && this.written + chunk.length > this.req.size) {
          throw sizeMismatch(this.req, url, `more than ${this.req.size} bytes`);
        }
        this.hash.update(chunk);
        this.written += chunk.length;
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
        if (this.pendingBytes >= WRITE_BATCH) await this.flush();
        if (this.req.onBytes && this.written > this.reported) {
          this.req.onBytes(this.written - this.reported);
          this.reported = this.written;
        }
      }
      await this.flush();
      return undefined;
    } finally {
      res.body.destroy();
    }
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await onDisk(this.root, this.req.label, async () => {
      let off = 0;
      while (off < buf.length) {
        const { bytesWritten } = await this.fh.write(buf, off, buf.length - off, this.onDiskBytes + off);
        off += bytesWritten;
      }
    });
    this.onDiskBytes += buf.length;
  }
}
