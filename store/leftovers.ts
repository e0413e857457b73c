/**
 * What an interrupted writer leaves in the store, and when it is safe to remove it without a lock.
 *
 * Every temp name in the store (the derived caches' `.tmp-<key>-<pid>-<owner>-<random>`, tmp/'s
 * `<hex>.<pid>.<owner>.<random>.part` and `scratch-<pid>-<owner>-<random>`) carries the writer's pid and an owner
 * tag: 8 hex digits of the sha256 of this machine's boot id and the writer's PID namespace. A pid is only meaningful
 * for the same kernel boot and the same PID namespace, so:
 *
 * - a temp whose owner tag is ours and whose pid is dead (kill(pid, 0) answers ESRCH) is removed at once: no live
 *   process can be writing it (a reused pid only keeps it longer);
 * - any other temp (another machine sharing the store, another container, a previous boot, a name from an older
 *   strata) is removed once it is untouched for a day, as tmp/ always was.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { processAlive as alive } from '../util/process.ts';

/** How long a temp of another owner (or of an unknown one) is left alone. */
export const FOREIGN_STALE_MS = 24 * 60 * 60 * 1000;

let tag: string | undefined;

/** This process's owner tag; `xxxxxxxx` (never ours) when the boot id or PID namespace cannot be read. */
export function ownerTag(): string {
  if (tag === undefined) {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const pidns = readlinkSync('/proc/self/ns/pid');
      tag = createHash('sha256').update(`${boot}\n${pidns}`).digest('hex').slice(0, 8);
    } catch {
      tag = 'xxxxxxxx';
    }
  }
  return tag;
}

/** The writer of a temp name, when the name records one. */
export function writerOf(name: string): { pid: number; owner: string } | undefined {
  const m =
    /^\.tmp-.*-(\d+)-([0-9a-f]{8})-[0-9a-f]{8}$/.exec(name) ??
    /^[0-9a-f]{64}\.(\d+)\.([0-9a-f]{8})\.[0-9a-f]{8}\.part$/.exec(name) ??
    /^scratch-(\d+)-([0-9a-f]{8})-.+$/.exec(name);
  return m ? { pid: Number(m[1]), owner: m[2]! } : undefined;
}


/** Whether the temp `name`, last modified at `mtimeMs`, is a leftover that may be removed now. */
export function isLeftover(name: string, mtimeMs: number, now: number): boolean {
  const w = writerOf(name);
  const mine = ownerTag();
  if (w && w.owner === mine && mine !== 'xxxxxxxx' && w.pid > 0) return w.pid !== process.pid && !alive(w.pid);
  return now - mtimeMs > FOREIGN_STALE_MS;
}
