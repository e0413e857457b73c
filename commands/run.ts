/**
 * `strata run -- CMD` and `strata shell`: enter the locked environment through Docker or the sandbox.
 *
 * Both lock and realise first when the lock or the image is missing or stale (saying so), unless `--locked` /
 * `--frozen`. The project directory (the manifest's) is mounted at its own path and is the working directory
 * (the current directory when it lies inside the project); HOME is the invoking user's, mounted when it exists;
 * the command runs as the invoking user (the sudo invoker when root runs for one).
 *
 * Fast path: `<store>/run/<key>.json` maps a lock (its whole content, plus SOURCE_DATE_EPOCH) to the image it
 * realised: manifest digest, config digest and environment. When that pointer and the unpacked rootfs exist, the
 * sandbox starts without loading the realiser at all. Heavy modules (the realiser, dockerode, the resolver) are
 * imported only on the paths that need them.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import type Dockerode from 'dockerode';
import { loadManifest, parseEnvAssignments } from '../manifest/manifest.ts';
import { readLock } from '../lock/lockfile.ts';
import { defaultCacheDir } from '../store/store.ts';
import { StrataError } from '../errors.ts';
import { terminalReporter, type Reporter } from '../report/reporter.ts';
import { detectGpu, gpuMounts, checkDriver, parseGpuSelection, DRIVER_BIN_DIR, type GpuMounts } from '../run/gpu.ts';
import { rootfsPath } from '../run/rootfs.ts';
import { chooseMethod, runSandbox, type Bind, type SandboxMethod } from '../run/sandbox.ts';
import type { Lockfile, Manifest } from '../model.ts';

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

/** What realising a lock produced, as far as running it needs. */
interface ImagePointer {
  manifestDigest: string;
  configDigest: string;
  /** The image config's Env, `K=V`. */
  env: string[];
}

export async function runCommand(command: string[], opts: RunOptions): Promise<void> {
  if (command.length === 0) throw new StrataError('E_USAGE', 'strata run needs a command: strata run -- CMD [ARGS...]');
  process.exitCode = await enter(command, opts, false);
}

export async function shellCommand(opts: RunOptions): Promise<void> {
  process.exitCode = await enter([], opts, true);
}

function pointerPath(storeRoot: string, lock: Lockfile): string {
  const key = createHash('sha256').update(JSON.stringify([lock, process.env.SOURCE_DATE_EPOCH ?? ''])).digest('hex');
  return join(storeRoot, 'run', `${key}.json`);
}

function readPointer(path: string): ImagePointer | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ImagePointer;
  } catch {
    return undefined;
  }
}

function writePointer(path: string, p: ImagePointer): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(p));
  renameSync(tmp, path);
}

/** The lock to enter: the current one; stale or missing ones are locked again (or refused with --locked/--frozen). */
async function lockFor(manifest: Manifest, reporter: Reporter, locked: boolean): Promise<Lockfile> {
  const lock = await readLock(join(dirname(manifest.path), 'strata.lock')).catch(() => undefined);
  if (lock && lock.manifestSha256 === manifest.sha256) return lock;
  const { currentLock } = await import('./realise.ts');
  return currentLock(manifest, reporter, locked);
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
  return parseEnvAssignments(list ?? []);
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
  const { dockerFromEnv, pingDocker } = await import('../realiser/docker.ts');
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
  const reporter = terminalReporter();
  const manifest = loadManifest(opts.manifest);
  const locked = Boolean(opts.locked || opts.frozen);
  const lock = await lockFor(manifest, reporter, locked);

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
    const storeRoot = defaultCacheDir();
    const pointer = await realisedForSandbox(storeRoot, lock, reporter, Boolean(opts.frozen));
    const env = { ...envList(pointer.env), ...extra, ...userEnv };
    if (gpu && gpu.binaries.length > 0) env.PATH = `${env.PATH ?? '/usr/bin:/bin'}:${DRIVER_BIN_DIR}`;
    const method: SandboxMethod = chooseMethod();
    const stage = join(storeRoot, 'rootfs', '.stage');
    mkdirSync(stage, { recursive: true });
    return runSandbox(
      {
        rootfs: rootfsPath(storeRoot, pointer.manifestDigest),
        argv,
        env,
        cwd: workDir,
        binds,
        ...(gpu ? { gpu } : {}),
        network: opts.network !== false,
        ...(me.sudo ? { runAs: { uid: me.uid, gid: me.gid } } : {}),
      },
      method,
      stage,
    );
  }

  const dockerMod = await import('../realiser/docker.ts');
  docker ??= dockerMod.dockerFromEnv();
  if (!(await dockerMod.pingDocker(docker))) {
    throw new StrataError('E_DOCKER', `cannot reach the Docker engine at ${dockerMod.dockerHostOf(docker)}`, 'start dockerd, point DOCKER_HOST at a running engine, or use --backend sandbox');
  }
  const image = await realisedForDocker(docker, lock, reporter, Boolean(opts.frozen));
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

/** Realises the lock (cached) and records the pointer. */
async function realiseAndPoint(storeRoot: string, lock: Lockfile, reporter: Reporter): Promise<{ pointer: ImagePointer; plainLayers: { path: string; size: number }[]; image: import('../realiser/oci/layout.ts').BuiltImage }> {
  const [{ realise }, { openStore }] = await Promise.all([import('../realiser/realise.ts'), import('../store/store.ts')]);
  const store = await openStore(storeRoot);
  const result = await realise(lock, { store, reporter });
  const config = JSON.parse(result.image.config.toString('utf8')) as { config?: { Env?: string[] } };
  const pointer: ImagePointer = { manifestDigest: result.image.manifestDigest, configDigest: result.image.configDigest, env: config.config?.Env ?? [] };
  writePointer(pointerPath(storeRoot, lock), pointer);
  return { pointer, plainLayers: result.plainLayers, image: result.image };
}

async function realisedForSandbox(storeRoot: string, lock: Lockfile, reporter: Reporter, frozen: boolean): Promise<ImagePointer> {
  const known = readPointer(pointerPath(storeRoot, lock));
  if (known && existsSync(rootfsPath(storeRoot, known.manifestDigest))) return known;
  if (frozen) {
    throw new StrataError('E_RUN', 'the environment is not realised yet and --frozen forbids realising it', 'run `strata realise` first, or drop --frozen');
  }
  reporter.info(known ? 'unpacking the environment for the sandbox' : 'preparing the environment: realising it (cached layers are reused) and unpacking it for the sandbox');
  const { pointer, plainLayers } = await realiseAndPoint(storeRoot, lock, reporter);
  const { ensureRootfs } = await import('../run/rootfs.ts');
  await ensureRootfs(storeRoot, pointer.manifestDigest, plainLayers, reporter);
  return pointer;
}

async function realisedForDocker(docker: Dockerode, lock: Lockfile, reporter: Reporter, frozen: boolean): Promise<ImagePointer & { tag: string }> {
  const storeRoot = defaultCacheDir();
  const { defaultTag } = await import('../realiser/realise.ts');
  const tag = defaultTag(lock);
  const known = readPointer(pointerPath(storeRoot, lock));
  if (known) {
    const id = await docker
      .getImage(tag)
      .inspect()
      .then((i) => i.Id)
      .catch(() => undefined);
    if (id === known.configDigest) return { ...known, tag };
  }
  if (frozen) {
    const id = await docker.getImage(tag).inspect().then((i) => i.Id).catch(() => undefined);
    if (id !== undefined) return { manifestDigest: '', configDigest: id, env: [], tag };
    throw new StrataError('E_RUN', `the Docker engine has no image ${tag} and --frozen forbids realising it`, 'run `strata realise --load` first, or drop --frozen');
  }
  const { pointer, image } = await realiseAndPoint(storeRoot, lock, reporter);
  const { loadImage } = await import('../realiser/docker.ts');
  await loadImage(image, tag, { docker, reporter });
  return { ...pointer, tag };
}

