/**
 * Who is using the store, so that `strata gc` never removes what a live strata process needs.
 *
 * Every process that opens a store (except gc itself) writes `<root>/active/<pid>-<owner>.json` first, then checks
 * for `<root>/gc.lock`: when a live gc holds it, the process takes its marker back and waits for the gc to end. gc
 * takes gc.lock first, then reads the markers. Either the marker was written before gc read the markers (gc sees
 * it), or after gc.lock was taken (the process sees gc.lock and waits): they can never both miss each other.
 *
 * A marker is `busy` (the process may still reach for anything: gc waits for it to end) until the process says it
 * is `running` a command in an environment (`strata run`, `strata shell`): it then names what it uses (the store
 * entries it touched), gc keeps those and goes ahead. A marker whose pid is dead (same boot and PID namespace, see
 * store/leftovers.ts) is stale and removed; one of another owner is honoured for a day.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { FOREIGN_STALE_MS, ownerTag } from './leftovers.ts';
import { processAlive as alive } from '../util/process.ts';

export interface Used {
  blobs: string[];
  /** namespace -> entry keys */
  entries: Record<string, string[]>;
}

export interface Marker {
  pid: number;
  owner: string;
  state: 'busy' | 'running';
  used?: Used;
}

const markerName = () => `${process.pid}-${ownerTag()}.json`;


/** Whether a marker or lock file of (pid, owner), last written at mtimeMs, still stands for a live process. */
function live(pid: number, owner: string, mtimeMs: number): boolean {
  const mine = ownerTag();
  if (owner === mine && mine !== 'xxxxxxxx') return alive(pid);
  return Date.now() - mtimeMs < FOREIGN_STALE_MS;
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** The live gc holding the store's lock, if any (a stale lock is removed). */
function gcHolder(root: string): boolean {
  const p = join(root, 'gc.lock');
  try {
    const st = statSync(p);
    const [pid, owner] = readFileSync(p, 'utf8').trim().split(' ');
    if (live(Number(pid), owner ?? '', st.mtimeMs)) return Number(pid) !== process.pid || owner !== ownerTag();
    rmSync(p, { force: true });
    return false;
  } catch {
    return false;
  }
}

let registered: string | undefined;

/** Registers this process as using the store at `root` (waiting while a gc runs); the marker goes when it exits. */
export function registerUse(root: string): void {
  if (registered === root) return;
  const dir = join(root, 'active');
  mkdirSync(dir, { recursive: true });
  const p = join(dir, markerName());
  for (;;) {
    writeAtomic(p, JSON.stringify({ pid: process.pid, owner: ownerTag(), state: 'busy' } satisfies Marker));
    if (!gcHolder(root)) break;
    rmSync(p, { force: true });
    while (gcHolder(root)) sleepSync(100);
  }
  if (registered === undefined) process.on('exit', () => rmSync(join(root, 'active', markerName()), { force: true }));
  registered = root;
}

/** Says that this process now runs a command in an environment that uses `used` (and will reach for nothing else). */
export function markRunning(root: string, used: Used): void {
  if (registered !== root) return;
  writeAtomic(join(root, 'active', markerName()), JSON.stringify({ pid: process.pid, owner: ownerTag(), state: 'running', used } satisfies Marker));
}

/** The markers of live processes other than this one (stale ones are removed). */
export function liveMarkers(root: string): Marker[] {
  const dir = join(root, 'active');
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: Marker[] = [];
  for (const n of names) {
    const p = join(dir, n);
    try {
      const st = statSync(p);
      const m = JSON.parse(readFileSync(p, 'utf8')) as Marker;
      if (m.pid === process.pid && m.owner === ownerTag()) continue;
      if (live(m.pid, m.owner, st.mtimeMs)) out.push(m);
      else rmSync(p, { force: true });
    } catch {
      // removed meanwhile, or being written
    }
  }
  return out;
}

/** Takes the store's gc lock (exclusive create); false when another live gc holds it. */
export function takeGcLock(root: string): boolean {
  const p = join(root, 'gc.lock');
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(p, 'wx');
      writeSync(fd, `${process.pid} ${ownerTag()}\n`);
      closeSync(fd);
      process.on('exit', () => releaseGcLock(root));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (gcHolder(root)) return false;
    }
  }
  return false;
}

export function releaseGcLock(root: string): void {
  const p = join(root, 'gc.lock');
  try {
    const [pid, owner] = readFileSync(p, 'utf8').trim().split(' ');
    if (Number(pid) === process.pid && owner === ownerTag()) rmSync(p, { force: true });
  } catch {
    // not held
  }
}
