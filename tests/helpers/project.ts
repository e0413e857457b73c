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
  strata(args: string[], opts?: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string }): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** Runs the real CLI; resolves with its exit code and output (CI=1: no progress bars). */
export function runCli(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; input?: string }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(STRATA, args, { cwd: opts.cwd, env: { ...process.env, CI: '1', ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
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
      return runCli(args, { cwd: opts.cwd ?? dir, env: { STRATA_CACHE_DIR: cache, ...opts.env }, input: opts.input ?? '' });
    },
  };
}

export function manifestFor(p: Project, packages: string, more = ''): string {
  return `[project]\nname = "fixture"\narch = "amd64"\n\n${channels(p.served, p.mirror)}\n[packages]\n${packages}\n${more}`;
}

export async function closeSharedMirror(): Promise<void> {
  if (shared) await (await shared).served.close();
}
