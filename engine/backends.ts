/**
 * The two ways into an environment, behind one `RunBackend`: `prepare` makes sure the lock's environment exists in
 * the backend's form (an unpacked rootfs, an image in the engine), realising it first unless `frozen`; the prepared
 * environment then runs any number of `RunSpec`s with the `RunIO` each asks for.
 */
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { StrataError } from '../errors.ts';
import { envList, pathWithDriver, type RunSpec } from '../run/runSpec.ts';
import { protectBinds } from '../run/protect.ts';
import { developEnv } from '../run/develop.ts';
import { TERMINAL_IO, type RunIO } from '../run/io.ts';
import { ensureRootfs, ensureDockerImage, type SandboxEnvironment } from './ensureEnvironment.ts';
import type { PulledImage } from '../registry/pull.ts';
import type { Ctx } from './ctx.ts';
import type { Lockfile } from '../model.ts';

export type BackendName = 'docker' | 'sandbox';

export interface PreparedEnvironment {
  run(spec: RunSpec, io?: RunIO): Promise<number>;
}

export interface RunBackend {
  name: BackendName;
  prepare(lock: Lockfile, ctx: Ctx, o: { frozen: boolean }): Promise<PreparedEnvironment>;
}

/** The sandbox backend: bubblewrap or unshare over the store's unpacked rootfs. */
export function sandboxBackend(): RunBackend {
  return {
    name: 'sandbox',
    async prepare(lock, ctx, o) {
      return sandboxOver(await ensureRootfs(lock, ctx, o), ctx);
    },
  };
}

/**
 * A pulled image (engine/images.ts), entered through the sandbox: no manifest, no lock, no mirror. The image's
 * config Env is the environment, as for a realised lock.
 */
export async function prepareImage(img: PulledImage, ctx: Ctx): Promise<PreparedEnvironment> {
  const { ensureImageRootfs } = await import('./images.ts');
  return sandboxOver(await ensureImageRootfs(img, ctx), ctx);
}

async function sandboxOver(environment: SandboxEnvironment, ctx: Ctx): Promise<PreparedEnvironment> {
  const { pointer, rootfs, stage, skeletons } = environment;
  const [{ chooseMethod }, { runSandbox }] = await Promise.all([import('../run/sandbox/choose.ts'), import('../run/sandbox/supervise.ts')]);
  const method = chooseMethod();
  return {
    run(spec, io = TERMINAL_IO) {
      const image = envList(pointer.env);
      const env = { ...image, ...spec.env, ...developEnv(image, spec.env) };
      const path = pathWithDriver(env.PATH, spec.gpu);
      if (path) env.PATH = path;
      // The develop prelude needs the environment's /bin/sh; without one the command runs as it is.
      const argv = spec.bare && !hasShell(rootfs) ? spec.bare : spec.argv;
      // The store stays read-only where the project directory or HOME holds it.
      const binds = protectBinds(spec.binds, [ctx.store.root]);
      return runSandbox(
        { rootfs, argv, env, cwd: spec.cwd, binds, ...(spec.gpu ? { gpu: spec.gpu } : {}), network: spec.network, ...(spec.sudo ? { runAs: { uid: spec.uid, gid: spec.gid } } : {}) },
        method,
        { stage, skeletons },
        io,
      );
    },
  };
}

function hasShell(rootfs: string): boolean {
  for (const p of ['bin/sh', 'usr/bin/sh']) {
    try {
      lstatSync(join(rootfs, p));
      return true;
    } catch {
      // not there
    }
  }
  return false;
}

/** The Docker backend: a container of the lock's image, loaded into the engine at DOCKER_HOST. */
export function dockerBackend(docker: Dockerode): RunBackend {
  return {
    name: 'docker',
    async prepare(lock, ctx, o) {
      const { pingDocker, dockerHostOf } = await import('../docker/engine.ts');
      if (!(await pingDocker(docker))) {
        throw new StrataError('E_DOCKER', `cannot reach the Docker engine at ${dockerHostOf(docker)}`, 'start dockerd, point DOCKER_HOST at a running engine, or use --backend sandbox');
      }
      const image = await ensureDockerImage(lock, ctx, { docker, frozen: o.frozen });
      const { runDocker } = await import('../run/docker.ts');
      return {
        run(spec, io = TERMINAL_IO) {
          const imageEnv = envList(image.env);
          const env = { ...spec.env, ...developEnv(imageEnv, spec.env) };
          const path = pathWithDriver(imageEnv.PATH, spec.gpu);
          if (path) env.PATH = path;
          return runDocker(
            docker,
            { image: image.tag, argv: spec.argv, env, cwd: spec.cwd, binds: protectBinds(spec.binds, [ctx.store.root]), ...(spec.gpu ? { gpu: spec.gpu } : {}), user: `${spec.uid}:${spec.gid}`, tty: spec.shell && io.stdio === 'inherit' && Boolean(process.stdin.isTTY), network: spec.network },
            io,
          );
        },
      };
    },
  };
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

/**
 * The backend asked for, or the default: docker when an engine answers, else the sandbox (saying which and why).
 * E_RUN when neither can work for this user.
 */
export async function pickBackend(requested: string | undefined, ctx: Ctx, o: { uid: number; env?: NodeJS.ProcessEnv }): Promise<RunBackend> {
  const env = o.env ?? process.env;
  if (requested !== undefined && requested !== 'docker' && requested !== 'sandbox') {
    throw new StrataError('E_USAGE', `--backend must be docker or sandbox, not "${requested}"`);
  }
  if (requested === 'sandbox') return sandboxBackend();
  if (requested === 'docker') return dockerBackend((await import('../docker/engine.ts')).dockerFromEnv(env));
  const docker = await dockerReachable(env);
  if (!docker && o.uid !== 0 && !userNamespacesWork()) {
    throw new StrataError('E_RUN', 'neither backend can work here: no Docker engine answers, and user namespaces are disabled for this non-root user', 'start a Docker engine (or set DOCKER_HOST), or enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), or run as root');
  }
  ctx.reporter.info(`strata: using the ${docker ? 'docker' : 'sandbox'} backend (${docker ? 'a Docker engine answers' : 'no Docker engine answers'})`);
  return docker ? dockerBackend(docker) : sandboxBackend();
}
