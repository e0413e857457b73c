/**
 * Writing what strata hands the user (an OCI image layout, a docker-archive, strata.lock): files whole through a
 * temp name beside them and a rename, directories made without looping, temp files that killed runs left behind
 * removed, and every filesystem error turned into one StrataError that names the path.
 *
 * Which error: a full disk is E_DISK (the store's message family, `diskFullAt`); a target named on the command line
 * that cannot be one (a file where a directory is wanted or the other way round, a missing parent directory, a path
 * through a file, a name too long) is E_USAGE (exit 64); anything else the filesystem refuses (permission, a
 * read-only or pseudo filesystem, an I/O error) is E_OUTPUT (exit 1).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StrataError } from '../errors.ts';
import { processAlive } from './process.ts';
import { diskFullAt, isDiskFull } from '../store/store.ts';

/** What is being written, for messages: e.g. `the OCI image layout` and its path. */
export interface Output {
  /** e.g. `the OCI image layout`, `the docker archive`, `the lock`. */
  what: string;
  /** The path the user knows: the layout directory, the archive or lock file. */
  path: string;
  /** The command-line option that named it (`--oci`), when one did: then a wrong kind of target is E_USAGE. */
  option?: string;
}

const TEMP = /^\..+\.tmp-(\d+)-[0-9a-f]+$/;

/** A temp name beside `path`: `.<name>.tmp-<pid>-<random>`, hidden, unique, and recognisable by `removeStaleTemps`. */
export function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

export async function statOrNull(path: string): Promise<{ size: number; isDirectory(): boolean } | null> {
  try {
    return await stat(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return null;
    throw e;
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return false; // this run has made no temp file here yet: one with its pid is a previous run's
  return processAlive(pid);
}

/**
 * Removes the temp files of runs that are no longer alive from `dir` (those `tempName` makes, and what `match`
 * accepts: older strata versions' names), so a killed or crashed run's partial files do not outlive the next one.
 * Only names whose pid is not a live process are touched; `only` limits it to temps of one target's name.
 */
export async function removeStaleTemps(dir: string, only?: string, match?: (name: string) => number | undefined): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // absent or unreadable: nothing of ours to clean
  }
  for (const name of names) {
    const m = TEMP.exec(name);
    const pid = m && (only === undefined || name.startsWith(`.${only}.tmp-`)) ? Number(m[1]) : match?.(name);
    if (pid === undefined || alive(pid)) continue;
    await unlink(join(dir, name)).catch(() => {});
  }
}

const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'the operation is not permitted there',
  EROFS: 'the filesystem is read-only',
  EIO: 'an input/output error',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'it is a directory',
  ENOENT: 'a directory on the path does not exist',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the name is too long',
  EEXIST: 'something else is in the way',
  EBUSY: 'the file is busy',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
};

/** Errnos that mean the target itself is the wrong kind of path: the user's command line to fix. */
const WRONG_TARGET = new Set(['ENOTDIR', 'EISDIR', 'ELOOP', 'ENAMETOOLONG', 'EEXIST']);

/** A refusal with a reason the caller worked out (e.g. which part of the path is a file). */
export function outputRefused(out: Output, reason: string, wrongTarget: boolean, code?: string): StrataError {
  const message = `cannot write ${out.what} ${out.path}: ${reason}${code ? ` (${code})` : ''}`;
  if (wrongTarget && out.option) return new StrataError('E_USAGE', message, `give ${out.option} another path`);
  return new StrataError('E_OUTPUT', message, code === 'EACCES' || code === 'EPERM' ? `check who may write there, or choose another path` : 'choose another path, or fix the filesystem and run again');
}

/**
 * Turns what a filesystem operation on an output threw into the user's error; a bug (no errno) passes through. A path
 * through a file, or a missing directory, is explained by looking at the path: which part is a file or missing.
 */
export async function outputError(out: Output, e: unknown): Promise<unknown> {
  if (e instanceof StrataError) return e;
  if (isDiskFull(e)) return diskFullAt(out.path, out.what);
  const code = errnoOf(e);
  if (code === undefined) return e;
  if (code === 'ENOTDIR' || code === 'ENOENT') {
    const near = await nearestExisting(out.path);
    if (!near.dir) return outputRefused(out, `${near.path} is not a directory`, true);
    if (code === 'ENOENT' && near.path !== out.path && near.path !== dirname(out.path)) {
      return outputRefused(out, `the directory ${dirname(out.path)} does not exist`, true);
    }
    if (code === 'ENOENT' && near.path === dirname(out.path)) {
      // The directory is there and creating in it still says ENOENT: a filesystem that takes no new entries (/proc).
      return outputRefused(out, `the filesystem at ${near.path} does not allow creating anything there`, false, code);
    }
  }
  return outputRefused(out, REASONS[code] ?? (e as Error).message, WRONG_TARGET.has(code), code);
}

/** Runs `op`, mapping its filesystem errors to the user's error about `out`. */
export async function onOutput<T>(out: Output, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw await outputError(out, e);
  }
}

/** The first existing ancestor of `path` (or `path` itself) and whether it is a directory. */
async function nearestExisting(path: string): Promise<{ path: string; dir: boolean }> {
  for (let p = path; ; p = dirname(p)) {
    const st = await statOrNull(p).catch(() => null);
    if (st !== null) return { path: p, dir: st.isDirectory() };
    if (dirname(p) === p) return { path: p, dir: true };
  }
}

/**
 * Makes directory `dir` and its missing parents; returns those it made, outermost first (for `undo`). Unlike
 * `mkdir(dir, { recursive: true })` it cannot loop: Node's recursive mkdir spins forever where the parent exists and
 * mkdir still says ENOENT (under /proc). That, and a file in the way, become the user's error about `out`.
 */
export async function makeDirs(dir: string, out: Output): Promise<string[]> {
  try {
    await mkdir(dir);
    return [dir];
  } catch (e) {
    const code = errnoOf(e);
    if (code === 'EEXIST') {
      const st = await statOrNull(dir).catch(() => null);
      if (st?.isDirectory()) return [];
      throw outputRefused(out, `${dir} exists and is not a directory`, true);
    }
    if (code === 'ENOTDIR') {
      const near = await nearestExisting(dirname(dir));
      throw outputRefused(out, `${near.path} is not a directory`, true);
    }
    if (code !== 'ENOENT') throw await outputError(out, e);
    const parent = dirname(dir);
    if (parent === dir || (await statOrNull(parent).catch(() => null)) !== null) {
      // The parent is there and mkdir still says ENOENT: a filesystem that holds no new directories.
      throw outputRefused(out, `the filesystem at ${parent} does not allow creating anything there`, false, code);
    }
    const made = await makeDirs(parent, out);
    try {
      await mkdir(dir);
    } catch (e2) {
      await undo(made, []);
      throw await outputError(out, e2);
    }
    return [...made, dir];
  }
}

/** Best effort, in reverse: removes the files and then the (empty) directories a failed write made. */
export async function undo(dirs: string[], files: string[]): Promise<void> {
  for (const f of [...files].reverse()) await unlink(f).catch(() => {});
  for (const d of [...dirs].reverse()) await rmdir(d).catch(() => {});
}

/**
 * Checks, before anything is built, that `file` can be written: it is not a directory, its directory exists, and a
 * file can be created there (a temp file, removed at once).
 */
export async function probeFile(file: string, out: Output): Promise<void> {
  await onOutput(out, async () => {
    if ((await statOrNull(file))?.isDirectory()) throw outputRefused(out, 'it is a directory', true);
    const probe = tempName(file);
    const fh = await open(probe, 'wx');
    await fh.close();
    await unlink(probe);
  });
}
