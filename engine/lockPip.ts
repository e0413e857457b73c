/**
 * Locking a `kind = "pip"` recipe's requirements: pip of the recipe's own build environment (python3-pip from the
 * channels, realised and unpacked like any build environment) resolves them against the package index with
 * `pip install --dry-run --report`, in the sandbox, into exact files, each with its URL and sha256. This is the one
 * step of strata that reaches a package index, and the only sandboxed run that has the network; the install at
 * realise runs in the ordinary network-less build sandbox from files fetched into the store first.
 */
import { execFile } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { StrataError } from '../errors.ts';
import { BUILD_HOME, buildEnvironment } from '../recipes/build.ts';
import { defaultPipIndex, pipReason, pipResolveArgv, wheelsFromReport } from '../recipes/pip.ts';
import { removeTree } from '../run/rootfs.ts';
import type { Bind } from '../run/sandbox/rootSteps.ts';
import type { Ctx } from './ctx.ts';
import type { Lockfile, LockedWheel, RecipeSpec } from '../model.ts';

/** The host's `pip config list`, or undefined when the host has no pip. */
async function hostPipConfig(): Promise<string | undefined> {
  for (const [cmd, args] of [['python3', ['-m', 'pip', 'config', 'list']], ['pip3', ['config', 'list']]] as const) {
    try {
      return (await promisify(execFile)(cmd, [...args], { timeout: 30_000 })).stdout;
    } catch {
      // try the next; no pip on the host is not an error here
    }
  }
  return undefined;
}

/** The index a pip recipe resolves against: its own `index`, else the host's default (recipes/pip.ts). */
export async function pipIndexFor(r: RecipeSpec, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (r.index !== undefined) return r.index;
  const found = defaultPipIndex(env, env.STRATA_PIP_INDEX || env.PIP_INDEX_URL ? undefined : await hostPipConfig());
  if (found === undefined) {
    throw new StrataError(
      'E_MANIFEST',
      `recipe "${r.name}" (kind = "pip") names no package index, and none is configured`,
      `set index = "https://<an index>/simple" in [recipes.${r.name}], or STRATA_PIP_INDEX, or the host's pip configuration (pip config set global.index-url URL)`,
    );
  }
  return found;
}

/**
 * Resolves a pip recipe's requirements with pip of its build environment (`buildLock`, unpacked by `rootfsFor`),
 * with the network; returns the locked wheels, sorted by name. A requirement the index cannot meet fails with
 * pip's own reason (E_UNKNOWN_PACKAGE); an sdist is refused naming the package.
 */
export async function resolvePipRequirements(
  r: RecipeSpec,
  buildLock: Lockfile,
  ctx: Ctx,
  rootfsFor: (l: Lockfile) => Promise<{ rootfs: string; stage: string; skeletons: import('../store/store.ts').DerivedCache }>,
): Promise<LockedWheel[]> {
  const index = await pipIndexFor(r);
  const label = `recipe ${r.name}`;
  const root = await rootfsFor(buildLock);
  if (!lstatSync(join(root.rootfs, 'usr/bin/python3'), { throwIfNoEntry: false })) {
    throw new StrataError('E_BUILD', `${label}: its build environment has no python3 to run pip with`, 'python3-pip must be installable from the channels (it is added to every pip recipe\'s build-depends)');
  }
  ctx.reporter.info(`recipe ${r.name}: resolving ${r.requirements!.length} requirement${r.requirements!.length === 1 ? '' : 's'} against ${index} with the build environment's pip`);
  const scratch = await ctx.store.tmpDir();
  try {
    const home = join(scratch, 'home');
    await mkdir(home, { recursive: true });
    await writeFile(join(home, 'requirements.txt'), r.requirements!.map((q) => `${q}\n`).join(''));
    const log = join(scratch, 'pip.log');
    await writeFile(log, '');
    const binds: Bind[] = [{ source: home, target: BUILD_HOME, writable: true }];
    // Host names of the index resolve as on the host.
    if (existsSync('/etc/resolv.conf')) binds.push({ source: '/etc/resolv.conf', target: '/etc/resolv.conf', writable: false });
    const env = { ...buildEnvironment({ env: r.env, prefix: r.prefix }, { sourceDateEpoch: 0, jobs: 1 }), STRATA_PIP_INDEX_URL: index };
    const [{ chooseMethod }, { runSandbox }] = await Promise.all([import('../run/sandbox/choose.ts'), import('../run/sandbox/supervise.ts')]);
    const code = await runSandbox(
      { rootfs: root.rootfs, argv: pipResolveArgv(`${BUILD_HOME}/report.json`, `${BUILD_HOME}/requirements.txt`), env, cwd: BUILD_HOME, binds, network: true, build: true },
      chooseMethod(process.env),
      { stage: root.stage, skeletons: root.skeletons },
      { stdio: 'files', stdout: log, stderr: log, forwardSignals: true, signalGroup: true },
    );
    if (code !== 0) {
      const text = await readFile(log, 'utf8').catch(() => '');
      const missing = /No matching distribution|Could not find a version/.test(text);
      throw new StrataError(
        missing ? 'E_UNKNOWN_PACKAGE' : 'E_FETCH',
        `${label}: pip cannot resolve its requirements against ${index} (exit ${code}):\n  ${pipReason(text)}`,
        missing ? `check the requirement's name and version against the index; pip recipes take wheels only (--only-binary :all:)` : 'check that the index is reachable from this host',
      );
    }
    const report = await readFile(join(home, 'report.json'), 'utf8');
    return wheelsFromReport(report, label);
  } finally {
    await removeTree(scratch);
  }
}
