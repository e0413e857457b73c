/**
 * Derived data in the store: everything strata computes from verified bytes and keeps to save time (parsed
 * indexes, release pointers, unpacked .debs, layer records, run pointers, unpacked root filesystems). Each
 * namespace is a directory under the store root; nothing outside store/ builds paths there.
 *
 * One write policy for all of it: an entry is written under a temp name unique to the writer
 * (`.tmp-<key>-<pid>-<random>`), fsynced, then renamed into place, so a reader sees the old entry, the new one,
 * or none, never a partial one, and two writers of one entry (two processes, or two channels of one process that
 * share a pointer) never collide. An entry that cannot be read back (cut short by a crash on a filesystem that
 * reorders, or damaged) reads as missing and is made again by its owner.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

export type CacheNamespace = 'channels' | 'indexes' | 'unpacked' | 'layers' | 'run' | 'rootfs' | 'skeletons' | 'recipes' | 'build-logs';

export interface DerivedCache {
  /** Where entry `key` lives (it may not exist yet): a file for JSON entries, a directory for `dir` entries. */
  path(key: string): string;
  /** The JSON entry `key`, or undefined when it is missing or unreadable. */
  readJson<T>(key: string): Promise<T | undefined>;
  /** Writes the JSON entry `key` atomically (unique temp name, fsync, rename). */
  writeJson(key: string, value: unknown): Promise<void>;
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
  /** Removes entry `key` (a directory entry, or a JSON entry): renamed away first, so readers see it whole or not at all. */
  remove(key: string): Promise<void>;
}

export function openCache(base: string, onDisk: <T>(what: string, op: () => Promise<T>) => Promise<T>): DerivedCache {
  const file = (key: string) => join(base, `${key}.json`);
  const tmpName = (key: string) => join(base, `.tmp-${key.slice(0, 40)}-${process.pid}-${randomBytes(4).toString('hex')}`);

  return {
    path: (key) => join(base, key),
    async readJson<T>(key: string) {
      try {
        return JSON.parse(await readFile(file(key), 'utf8')) as T;
      } catch {
        return undefined;
      }
    },
    readJsonSync<T>(key: string) {
      try {
        return JSON.parse(readFileSync(file(key), 'utf8')) as T;
      } catch {
        return undefined;
      }
    },
    async writeJson(key, value) {
      await onDisk(key, async () => {
        await mkdir(base, { recursive: true });
        const tmp = tmpName(key);
        try {
          const fh = await open(tmp, 'w', 0o644);
          try {
            await fh.writeFile(JSON.stringify(value));
            await fh.sync();
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
        if (!existsSync(p)) continue;
        const tmp = tmpName(key);
        await rename(p, tmp);
        await rm(tmp, { recursive: true, force: true });
      }
    },
  };
}
