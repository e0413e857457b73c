/**
 * What a run needs, whichever backend runs it: the command, the environment variables strata adds, the working
 * directory, the binds (the project directory, HOME) and the user. `runSpecFor` is pure: everything it reads of the
 * host arrives as `HostFacts` (read once, by `hostFacts`).
 */
import { existsSync, statSync } from 'node:fs';
import { relative } from 'node:path';
import { parseEnvAssignments } from '../manifest/manifest.ts';
import { DRIVER_BIN_DIR, type GpuMounts } from './gpu.ts';
import { developArgv, developPrelude, type VenvMode } from './develop.ts';
import type { Bind } from './sandbox/rootSteps.ts';
import type { Lockfile } from '../model.ts';

/** What of the host a run spec depends on. */
export interface HostFacts {
  cwd: string;
  /** The invoking user's HOME when it is an existing directory other than `/`. */
  home?: string;
  term?: string;
  user?: string;
  logname?: string;
  /** The user the command runs as: the sudo invoker when root runs for one, else this process's user. */
  uid: number;
  gid: number;
  /** Root running for a sudo invoker. */
  sudo: boolean;
}

export function hostFacts(env: NodeJS.ProcessEnv = process.env): HostFacts {
  let uid = process.getuid?.() ?? 0;
  let gid = process.getgid?.() ?? 0;
  let sudo = false;
  if (uid === 0 && env.SUDO_UID && /^\d+$/.test(env.SUDO_UID) && env.SUDO_UID !== '0') {
    gid = /^\d+$/.test(env.SUDO_GID ?? '') ? Number(env.SUDO_GID) : Number(env.SUDO_UID);
    uid = Number(env.SUDO_UID);
    sudo = true;
  }
  const home = env.HOME && env.HOME !== '/' && existsSync(env.HOME) && statSync(env.HOME).isDirectory() ? env.HOME : undefined;
  return {
    cwd: process.cwd(),
    ...(home ? { home } : {}),
    ...(env.TERM ? { term: env.TERM } : {}),
    ...(env.USER ? { user: env.USER } : {}),
    ...(env.LOGNAME ? { logname: env.LOGNAME } : {}),
    uid,
    gid,
    sudo,
  };
}

export interface RunRequest {
  /** The command; undefined for an interactive shell. */
  command?: string[];
  /** `--env KEY=VALUE` entries. */
  env?: string[];
  network: boolean;
  gpu?: GpuMounts;
  /** Bind the host's /tmp instead of a private one. */
  shareTmp?: boolean;
  /** The project's venv (run/develop.ts); default off (a pulled image has no project). */
  venv?: VenvMode;
}

export interface RunSpec {
  argv: string[];
  /**
   * The command alone, without the develop prelude (run/develop.ts) that `argv` starts with: what runs in an
   * environment that has no /bin/sh. Absent for a shell.
   */
  bare?: string[];
  /** Set over the image's own environment. */
  env: Record<string, string>;
  cwd: string;
  binds: Bind[];
  gpu?: GpuMounts;
  network: boolean;
  uid: number;
  gid: number;
  sudo: boolean;
  /** An interactive shell (a TTY when stdin is one). */
  shell: boolean;
}

/** What a run spec reads of the environment: a lock, or what a pulled image gives in its place. */
export type RunSubject = {
  project: Pick<Lockfile['project'], 'name'>;
  image: Pick<Lockfile['image'], 'shellHook'> & Partial<Pick<Lockfile['image'], 'env'>>;
} & Partial<Pick<Lockfile, 'closure' | 'recipes'>> & { packages?: Pick<Lockfile['packages'][number], 'name'>[] };

/** The spec of a run of `lock`'s environment for the project in `projectDir`. */
export function runSpecFor(lock: RunSubject, projectDir: string, host: HostFacts, r: RunRequest): RunSpec {
  const inside = (dir: string, path: string) => !relative(dir, path).startsWith('..');
  const cwd = inside(projectDir, host.cwd) ? host.cwd : projectDir;
  const binds: Bind[] = [{ source: projectDir, target: projectDir, writable: true }];
  // A project inside HOME is mounted after HOME, over it; a HOME inside the project comes with it.
  if (host.home && !inside(projectDir, host.home)) {
    const b = { source: host.home, target: host.home, writable: true };
    if (inside(host.home, projectDir)) binds.unshift(b);
    else binds.push(b);
  }
  // The host's /tmp first: the project directory or HOME may lie below it, and are mounted over it.
  if (r.shareTmp) binds.unshift({ source: '/tmp', target: '/tmp', writable: true });
  const shell = r.command === undefined;
  const home = host.home ?? '/tmp';
  // [env] values may name the project directory and HOME, which differ from machine to machine: they are set here,
  // for the run, over the image's literal values.
  const placed: Record<string, string> = {};
  for (const [k, v] of Object.entries(lock.image.env ?? {})) {
    if (/\$\{(PROJECT|HOME)\}/.test(v)) placed[k] = v.replaceAll('${PROJECT}', projectDir).replaceAll('${HOME}', home);
  }
  const env: Record<string, string> = {
    ...placed,
    HOME: home,
    TERM: host.term ?? 'xterm',
    ...(host.user ? { USER: host.user } : {}),
    ...(host.logname ? { LOGNAME: host.logname } : {}),
    ...(shell ? { PS1: `(strata:${lock.project.name}) $ ` } : {}),
    ...(r.gpu ? r.gpu.env : {}),
    ...parseEnvAssignments(r.env ?? []),
  };
  const names = new Set((lock.packages ?? []).map((p) => p.name));
  const prelude = developPrelude({
    projectDir,
    closure: lock.closure ?? '',
    venv: lock.closure ? (r.venv ?? 'off') : 'off',
    python: names.has('python3'),
    // Debian's toolkit, or a recipe that may install NVIDIA's own (/usr/local/cuda).
    cuda: names.has('nvidia-cuda-toolkit') || (lock.recipes ?? []).length > 0,
    ...(lock.image.shellHook ? { hook: lock.image.shellHook } : {}),
    shell,
  });
  return {
    argv: developArgv(prelude, r.command, lock.image.shellHook),
    ...(r.command ? { bare: r.command } : {}),
    env,
    cwd,
    binds,
    ...(r.gpu ? { gpu: r.gpu } : {}),
    network: r.network,
    uid: host.uid,
    gid: host.gid,
    sudo: host.sudo,
    shell,
  };
}

/** `K=V` entries (an image config's Env) as a map. */
export function envList(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** The image's PATH with the host driver's binaries (nvidia-smi) appended, when the run has any. */
export function pathWithDriver(imagePath: string | undefined, gpu: GpuMounts | undefined): string | undefined {
  if (!gpu || gpu.binaries.length === 0) return undefined;
  return `${imagePath ?? '/usr/bin:/bin'}:${DRIVER_BIN_DIR}`;
}
