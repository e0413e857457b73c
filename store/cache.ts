/**
 * Derived data in the store: everything strata computes from verified bytes and keeps to save time (parsed
 * indexes, release pointers, unpacked .debs, layer records, run pointers, unpacked root filesystems). Each
 * namespace is a directory under the store root; nothing outside store/ builds paths there.
 *
 * One write policy for all of it: an entry is written under a temp name unique to the writer
 * (`.tmp-<key>-<pid>-<random>`), fsynced, then renamed into place, so a reader sees the old entry, the new one,
 * or none, never a partial one, and two writers of one entry (two processes, or two channels of one process that
 * share a pointer) never collide. An entry that cannot be read back (cut short by a crash on a filesystem that
 * reorders, or damaged) reads as missing with `readJson`, or as damaged with `readEntry`, and is made again by its
 * owner. A temp left by a writer that died is removed when a store is opened (store/leftovers.ts says when).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isLeftover, ownerTag } from './leftovers.ts';

export type CacheNamespace = 'channels' | 'indexes' | 'unpacked' | 'layers' | 'run' | 'rootfs' | 'skeletons' | 'recipes' | 'build-logs' | 'images' | 'generated' | 'roots' | 'locks';

/** Every namespace, for the store's own sweeps (leftover temps, `strata verify`). */
export const CACHE_NAMESPACES: readonly CacheNamespace[] = ['channels', 'indexes', 'unpacked', 'layers', 'run', 'rootfs', 'skeletons', 'recipes', 'build-logs', 'images', 'generated', 'roots', 'locks'];

/** A JSON entry as read: present and valid, absent, or present but unreadable or not of the expected shape. */
export type JsonEntry<T> = { state: 'ok'; value: T } | { state: 'missing' } | { state: 'damaged'; reason: string };

export interface DerivedCache {
  /** Where entry `key` lives (it may not exist yet): a file for JSON entries, a directory for `dir` entries. */
  path(key: string): string;
  /** The JSON entry `key`, or undefined when it is missing or unreadable. */
  readJson<T>(key: string): Promise<T | undefined>;
  /**
   * The JSON entry `key`, telling a missing entry from a damaged one (unreadable, cut short, or failing `valid`), so
   * that its owner can say so before making it again.
   */
  readEntry<T>(key: string, valid?: (v: unknown) => string | undefined): Promise<JsonEntry<T>>;
  /**
   * Writes the JSON entry `key` atomically (unique temp name, fsync, rename). `durable: false` skips the fsync, for
   * entries whose loss costs only time (a verified stamp: a lost or torn one means one more re-hash).
   */
  writeJson(key: string, value: unknown, o?: { durable?: boolean }): Promise<void>;
  /**
   * Removes entry `key`: its JSON file and its directory, whichever exist (a directory with read-only parts too),
   * each renamed away first, so readers see it whole or not at all.
   */
  remove(key: string): Promise<void>;
  /** The namespace's entries: JSON keys and directory keys (temps and dot-names such as `.stage` left out). */
  list(): Promise<{ json: string[]; dirs: string[] }>;
  /** Removes the temps dead writers left here (see store/leftovers.ts); returns their names. */
  sweep(now: number): Promise<string[]>;
  /** Synchronous twins, for the few callers on a synchronous path (the sandbox's skeleton). */
  readJsonSync<T>(key: string): T | undefined;
  writeJsonSync(key: string, value: unknown): void;
  /**
   * The directory entry `key`: returned at once when present, else `fill` writes it into a fresh temp directory
   * that is then renamed into place whole. When another writer finishes first, theirs is kept. The temp directory
   * is removed on failure.
   */
  dir(key: string, fill: (tmp: string) => Promise<void>, o?: { remove?: (dir: string) => Promise<void> }): Promise<string>;
  dirSync(key: string, fill: (tmp: string) => void): string;
  /** A plain persistent directory in the namespace (a mount point), created when missing. */
  ensureDir(name: string): Promise<string>;
}

export function openCache(base: string, onDisk: <T>(what: string, op: () => Promise<T>) => Promise<T>): DerivedCache {
  const file = (key: string) => join(base, `${key}.json`);
  const tmpName = (key: string) => join(base, `.tmp-${key.slice(0, 40)}-${process.pid}-${ownerTag()}-${randomBytes(4).toString('hex')}`);

  return {
    path: (key) => join(base, key),
    async readJson<T>(key: string) {
      try {
        return JSON.parse(await readFile(file(key), 'utf8')) as T;
      } catch {
        return undefined;
      }
    },
    async readEntry<T>(key: string, valid?: (v: unknown) => string | undefined): Promise<JsonEntry<T>> {
      let text: string;
      try {
        text = await readFile(file(key), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'missing' };
        return { state: 'damaged', reason: `unreadable: ${(e as Error).message}` };
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return { state: 'damaged', reason: text.length === 0 ? 'empty' : 'cut short or not JSON' };
      }
      const bad = valid?.(value);
      return bad === undefined ? { state: 'ok', value: value as T } : { state: 'damaged', reason: bad };
    },
    readJsonSync<T>(key: string) {
      try {
        return JSON.parse(readFileSync(file(key), 'utf8')) as T;
      } catch {
        return undefined;
      }
    },
    async writeJson(key, value, o = {}) {
      await onDisk(key, async () => {
        await mkdir(base, { recursive: true });
        const tmp = tmpName(key);
        try {
          const fh = await open(tmp, 'w', 0o644);
          try {
            await fh.writeFile(JSON.stringify(value));
            if (o.durable !== false) await fh.sync();
          } finally {
            await fh.close();
          }
          await rename(tmp, file(key));
        } finally {
          await rm(tmp, { force: true });
        }
      });
    },
    writeJsonSync(key, value) {
      mkdirSync(base, { recursive: true });
      const tmp = tmpName(key);
      try {
        writeFileSync(tmp, JSON.stringify(value), { flush: true });
        renameSync(tmp, file(key));
      } finally {
        rmSync(tmp, { force: true });
      }
    },
    async dir(key, fill, o = {}) {
      const dest = join(base, key);
      if (existsSync(dest)) return dest;
      const tmp = tmpName(key);
      try {
        await onDisk(key, async () => {
          await mkdir(tmp, { recursive: true, mode: 0o755 });
          await fill(tmp);
          try {
            await rename(tmp, dest);
          } catch (e) {
            // Another writer finished first: keep theirs.
            if (!existsSync(dest)) throw e;
          }
        });
        return dest;
      } finally {
        if (existsSync(tmp)) await (o.remove ?? ((d: string) => rm(d, { recursive: true, force: true })))(tmp);
      }
    },
    dirSync(key, fill) {
      const dest = join(base, key);
      if (existsSync(dest)) return dest;
      const tmp = tmpName(key);
      mkdirSync(tmp, { recursive: true, mode: 0o755 });
      try {
        fill(tmp);
        try {
          renameSync(tmp, dest);
        } catch (e) {
          if (!existsSync(dest)) throw e;
        }
        return dest;
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    },
    async ensureDir(name) {
      const d = join(base, name);
      await onDisk(name, () => mkdir(d, { recursive: true }));
      return d;
    },
    async remove(key) {
      for (const p of [join(base, key), file(key)]) {
        const tmp = tmpName(key);
        try {
          await rename(p, tmp);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw e;
        }
        await removeAll(tmp);
      }
    },
    async list() {
      const json: string[] = [];
      const dirs: string[] = [];
      let names;
      try {
        names = await readdir(base, { withFileTypes: true });
      } catch {
        return { json, dirs };
      }
      for (const d of names) {
        if (d.name.startsWith('.')) continue;
        if (d.isDirectory()) dirs.push(d.name);
        else if (d.isFile() && d.name.endsWith('.json')) json.push(d.name.slice(0, -5));
      }
      return { json: json.sort(), dirs: dirs.sort() };
    },
    async sweep(now) {
      let names: string[];
      try {
        names = (await readdir(base)).filter((n) => n.startsWith('.tmp-'));
      } catch {
        return [];
      }
      const removed: string[] = [];
      for (const name of names) {
        const p = join(base, name);
        try {
          if (!isLeftover(name, (await lstat(p)).mtimeMs, now)) continue;
          await removeAll(p);
          removed.push(name);
        } catch {
          // Gone meanwhile, or not ours to remove.
        }
      }
      return removed;
    },
  };
}

/** Removes a file or a tree, making read-only directories in it writable first when that is what stops it. */
export async function removeAll(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (e) {
    if (!['EACCES', 'EPERM', 'ENOTEMPTY'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
}

async function makeWritable(dir: string): Promise<void> {
  try {
    const st = await lstat(dir);
    if (!st.isDirectory()) return;
    await chmod(dir, 0o700);
    for (const e of await readdir(dir, { withFileTypes: true })) if (e.isDirectory()) await makeWritable(join(dir, e.name));
  } catch {
    // best effort: the rm that follows reports what is left
  }
}
