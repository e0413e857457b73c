/**
 * `strata run -- CMD` and `strata shell`: enter the locked environment through Docker or the sandbox.
 *
 * Both lock and realise first when the lock or the image is missing or stale (saying so), unless `--locked` /
 * `--frozen` (engine/ensureLock.ts, engine/ensureEnvironment.ts). The project directory (the manifest's) is
 * mounted at its own path and is the working directory (the current directory when it lies inside the project);
 * HOME is the invoking user's, mounted when it exists; the command runs as the invoking user (the sudo invoker when
 * root runs for one).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import type Dockerode from 'dockerode';
import { loadManifest } from '../manifest/manifest.ts';
import { StrataError } from '../errors.ts';
import { detectGpu, gpuMounts, checkDriver, parseGpuSelection, DRIVER_BIN_DIR, type GpuMounts } from '../run/gpu.ts';
import { chooseMethod, runSandbox, type Bind, type SandboxMethod } from '../run/sandbox.ts';
import { openCtx } from '../engine/ctx.ts';
import { ensureLock } from '../engine/ensureLock.ts';
import { ensureRootfs, ensureDockerImage } from '../engine/ensureEnvironment.ts';
import type { Lockfile } from '../model.ts';

export interface RunOptions {
  manifest: string;
  backend?: string;
  gpus?: string;
  locked?: boolean;
  frozen?: boolean;
  /** false with --no-network. */
  network?: boolean;
  env?: string[];
}

export async function runCommand(command: string[], opts: RunOptions): Promise<void> {
  if (command.length === 0) throw new StrataError('E_USAGE', 'strata run needs a command: strata run -- CMD [ARGS...]');
  process.exitCode = await enter(command, opts, false);
}

export async function shellCommand(opts: RunOptions): Promise<void> {
  process.exitCode = await enter([], opts, true);
}

/** The user the command runs as: the sudo invoker when root runs for one, else this process's user. */
function invoker(env: NodeJS.ProcessEnv = process.env): { uid: number; gid: number; sudo: boolean } {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid === 0 && env.SUDO_UID && /^\d+$/.test(env.SUDO_UID) && env.SUDO_UID !== '0') {
    return { uid: Number(env.SUDO_UID), gid: /^\d+$/.test(env.SUDO_GID ?? '') ? Number(env.SUDO_GID) : Number(env.SUDO_UID), sudo: true };
  }
  return { uid, gid, sudo: false };
}

function parseEnvOptions(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new StrataError('E_USAGE', `--env takes KEY=VALUE, not "${kv}"`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

function envList(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** The shell command line for `strata shell`: the hook, then bash when the environment has it, else sh. */
function shellArgv(hook: string | undefined): string[] {
  const script = [
    ...(hook ? [hook] : []),
    'if command -v bash >/dev/null 2>&1; then exec bash --norc --noprofile -i; fi',
    'exec sh -i',
  ].join('\n');
  return ['/bin/sh', '-c', script];
}

/** The GPU files and nodes for this run, or undefined for none; throws E_GPU when the environment cannot have what it asks for. */
function gpuFor(lock: Lockfile, gpus: string | undefined): GpuMounts | undefined {
  const wantsGpu = lock.image.gpuDriver === 'host';
  const selection = gpus !== undefined ? parseGpuSelection(gpus) : wantsGpu ? 'all' : 'none';
  if (selection === 'none') return undefined;
  const root = process.env.STRATA_GPU_ROOT || '/';
  const host = detectGpu({ root });
  if (!host) {
    throw new StrataError(
      'E_GPU',
      wantsGpu
        ? 'the environment asks for a GPU ([gpu] driver = "host") but this host has no NVIDIA driver (no /proc/driver/nvidia/version)'
        : `--gpus ${gpus} asks for a GPU but this host has no NVIDIA driver (no /proc/driver/nvidia/version)`,
      'load the NVIDIA kernel driver, or run with --gpus none to start without the GPU',
    );
  }
  checkDriver(lock, host.driverVersion);
  return gpuMounts(host, selection);
}

async function dockerReachable(env: NodeJS.ProcessEnv): Promise<Dockerode | undefined> {
  // Without DOCKER_HOST and without the default socket there is nothing to ask; skip loading dockerode.
  if (!env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) return undefined;
  const { dockerFromEnv, pingDocker } = await import('../docker/engine.ts');
  const docker = dockerFromEnv(env);
  return (await pingDocker(docker)) ? docker : undefined;
}

function userNamespacesWork(): boolean {
  for (const f of ['/proc/sys/kernel/unprivileged_userns_clone', '/proc/sys/user/max_user_namespaces']) {
    try {
      if (readFileSync(f, 'utf8').trim() === '0') return false;
    } catch {
      // not on this kernel
    }
  }
  return true;
}

async function enter(command: string[], opts: RunOptions, shell: boolean): Promise<number> {
  const manifest = loadManifest(opts.manifest);
  const ctx = await openCtx();
  const { reporter } = ctx;
  const lock = await ensureLock(manifest, ctx, opts.locked || opts.frozen ? 'locked' : 'relock');

  let backend = opts.backend;
  let docker: Dockerode | undefined;
  if (backend !== undefined && backend !== 'docker' && backend !== 'sandbox') {
    throw new StrataError('E_USAGE', `--backend must be docker or sandbox, not "${backend}"`);
  }
  const me = invoker();
  if (backend === undefined) {
    docker = await dockerReachable(process.env);
    backend = docker ? 'docker' : 'sandbox';
    if (backend === 'sandbox' && me.uid !== 0 && !userNamespacesWork()) {
      throw new StrataError('E_RUN', 'neither backend can work here: no Docker engine answers, and user namespaces are disabled for this non-root user', 'start a Docker engine (or set DOCKER_HOST), or enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), or run as root');
    }
    reporter.info(`strata: using the ${backend} backend (${backend === 'docker' ? 'a Docker engine answers' : 'no Docker engine answers'})`);
  }

  const gpu = gpuFor(lock, opts.gpus);
  const projectDir = dirname(manifest.path);
  const cwd = process.cwd();
  const workDir = cwd === projectDir || !relative(projectDir, cwd).startsWith('..') ? cwd : projectDir;
  const binds: Bind[] = [{ source: projectDir, target: projectDir, writable: true }];
  const home = process.env.HOME;
  let homeInside = '/tmp';
  if (home && home !== '/' && existsSync(home) && statSync(home).isDirectory()) {
    homeInside = home;
    const inside = (dir: string, path: string) => !relative(dir, path).startsWith('..');
    // A project inside HOME is mounted after HOME, over it; a HOME inside the project comes with it.
    if (!inside(projectDir, home)) {
      const b = { source: home, target: home, writable: true };
      if (inside(home, projectDir)) binds.unshift(b);
      else binds.push(b);
    }
  }
  const extra: Record<string, string> = {
    HOME: homeInside,
    TERM: process.env.TERM ?? 'xterm',
    ...(process.env.USER ? { USER: process.env.USER } : {}),
    ...(process.env.LOGNAME ? { LOGNAME: process.env.LOGNAME } : {}),
    ...(shell ? { PS1: `(strata:${lock.project.name}) $ ` } : {}),
    ...(gpu ? gpu.env : {}),
  };
  const argv = shell ? shellArgv(lock.image.shellHook) : command;
  const userEnv = parseEnvOptions(opts.env);

  if (backend === 'sandbox') {
    const { pointer, rootfs, stage, skeletons } = await ensureRootfs(lock, ctx, { frozen: Boolean(opts.frozen) });
    const env = { ...envList(pointer.env), ...extra, ...userEnv };
    if (gpu && gpu.binaries.length > 0) env.PATH = `${env.PATH ?? '/usr/bin:/bin'}:${DRIVER_BIN_DIR}`;
    const method: SandboxMethod = chooseMethod();
    return runSandbox(
      {
        rootfs,
        argv,
        env,
        cwd: workDir,
        binds,
        ...(gpu ? { gpu } : {}),
        network: opts.network !== false,
        ...(me.sudo ? { runAs: { uid: me.uid, gid: me.gid } } : {}),
      },
      method,
      { stage, skeletons },
    );
  }

  const dockerMod = await import('../docker/engine.ts');
  docker ??= dockerMod.dockerFromEnv();
  if (!(await dockerMod.pingDocker(docker))) {
    throw new StrataError('E_DOCKER', `cannot reach the Docker engine at ${dockerMod.dockerHostOf(docker)}`, 'start dockerd, point DOCKER_HOST at a running engine, or use --backend sandbox');
  }
  const image = await ensureDockerImage(lock, ctx, { docker, frozen: Boolean(opts.frozen) });
  const env = { ...extra, ...userEnv };
  if (gpu && gpu.binaries.length > 0) env.PATH = `${envList(image.env).PATH ?? '/usr/bin:/bin'}:${DRIVER_BIN_DIR}`;
  const { runDocker } = await import('../run/docker.ts');
  return runDocker(docker, {
    image: image.tag,
    argv,
    env,
    cwd: workDir,
    binds,
    ...(gpu ? { gpu } : {}),
    user: `${me.uid}:${me.gid}`,
    tty: shell && Boolean(process.stdin.isTTY),
    network: opts.network !== false,
  });
}
