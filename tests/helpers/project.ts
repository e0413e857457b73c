/**
 * A temporary project for end-to-end tests: a served fixture mirror, a strata.toml pointing at it, and a way to
 * run the real CLI (`bin/strata`) in that directory with a private cache.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { standardMirror, serveMirror, type FixtureMirror, type ServedMirror } from './mirror.ts';

export const STRATA = resolve(import.meta.dirname, '../../bin/strata');

export interface Project {
  dir: string;
  cache: string;
  mirror: FixtureMirror;
  served: ServedMirror;
  writeManifest(body: string): string;
  strata(args: string[], opts?: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string; timeoutMs?: number }): Promise<CliResult>;
}

export interface CliOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** false: the CLI sees exactly `env`, nothing of this process's environment (default true, plus CI=1). */
  inheritEnv?: boolean;
  /** Run as this user (through runuser), with `env` passed on. */
  user?: string;
  /**
   * Send `sig` once stdout shows `after`: to strata alone, or with `group` to its whole process group (as a batch
   * system or a terminal does); stdin is then left open.
   */
  signal?: { after: string; sig: NodeJS.Signals; group?: boolean };
  /** Kill the CLI (SIGKILL) if it runs longer than this: a test of a hang then fails instead of hanging. */
  timeoutMs?: number;
}

export interface CliResult {
  /** The exit code; -1 when a signal ended the CLI. */
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real CLI asynchronously (the fixture mirror is served from this process); resolves with its exit code
 * and output. Inheriting this process's environment, CI=1 keeps progress bars off.
 */
export function runCli(args: string[], opts: CliOptions): Promise<CliResult> {
  const env = opts.inheritEnv === false ? { ...opts.env } : { ...process.env, CI: '1', ...opts.env };
  const [file, argv] = opts.user
    ? ['runuser', ['-u', opts.user, '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), STRATA, ...args]]
    : [STRATA, args];
  return new Promise((res, rej) => {
    const sig = opts.signal;
    const child = spawn(file as string, argv as string[], { cwd: opts.cwd, env: opts.user ? { PATH: process.env.PATH } : env, stdio: ['pipe', 'pipe', 'pipe'], detached: Boolean(sig?.group), ...(opts.timeoutMs !== undefined && { timeout: opts.timeoutMs, killSignal: 'SIGKILL' as const }) });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d) => {
      stdout += d;
      if (sig && !sent && stdout.includes(sig.after)) {
        sent = true;
        if (sig.group) process.kill(-child.pid!, sig.sig);
        else child.kill(sig.sig);
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code: code ?? -1, stdout, stderr }));
    if (!sig) child.stdin.end(opts.input ?? '');
  });
}

export interface Shared {
  mirror: FixtureMirror;
  served: ServedMirror;
}

let shared: Promise<Shared> | undefined;

/** One built and served fixture mirror per test process; call `closeSharedMirror` from `test.after.always`. */
export function sharedMirror(): Promise<Shared> {
  shared ??= (async () => {
    const mirror = await standardMirror(mkdtempSync(join(tmpdir(), 'strata-mirror-')));
    const served = await serveMirror(mirror.root);
    return { mirror, served };
  })();
  return shared;
}

export function channels(served: ServedMirror, mirror: FixtureMirror, extra = ''): string {
  return `[channels.stable]\nurl = "${served.url}"\nsuite = "stable"\ncomponents = ["main", "contrib"]\nsigned-by = "${mirror.keyring}"\n${extra}\n[channels.current]\nurl = "${served.url}"\nsuite = "current"\ncomponents = ["main", "contrib"]\nsigned-by = "${mirror.keyring}"\n`;
}

export async function project(): Promise<Project> {
  const { mirror, served } = await sharedMirror();
  const dir = mkdtempSync(join(tmpdir(), 'strata-project-'));
  const cache = join(dir, '.cache');
  return {
    dir,
    cache,
    mirror,
    served,
    writeManifest(body) {
      const f = join(dir, 'strata.toml');
      writeFileSync(f, body);
      return f;
    },
    strata(args, opts = {}) {
      return runCli(args, { cwd: opts.cwd ?? dir, env: { STRATA_CACHE_DIR: cache, ...opts.env }, input: opts.input ?? '', ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }) });
    },
  };
}

export function manifestFor(p: Project, packages: string, more = ''): string {
  return `[project]\nname = "fixture"\narch = "amd64"\n\n${channels(p.served, p.mirror)}\n[packages]\n${packages}\n${more}`;
}

export async function closeSharedMirror(): Promise<void> {
  if (shared) await (await shared).served.close();
}
