/**
 * The image configuration of a realised lock: environment, labels, entrypoint and history. Pure: a function of
 * the lock, the layer jobs (their labels and comments become the history, one entry per layer) and the mtime.
 */
import { GPU_DRIVER_DIR } from './tree.ts';
import { platformForDebianArch } from './oci/spec.ts';
import type { ImageInput, LayerBlob } from './oci/image.ts';
import type { LayerJob } from './layers.ts';
import { HOST_GPU, type Lockfile } from '../model.ts';

/** The default image name:tag of a lock: `<project>:<first 12 hex of the closure>`. */
export function defaultTag(lock: Lockfile): string {
  return `${lock.project.name}:${lock.closure.replace(/^sha256:/, '').slice(0, 12)}`;
}

/** What `buildImage` needs to make the image of `lock` from `layers` (base first, one per job). */
export function imageInput(lock: Lockfile, jobs: Pick<LayerJob, 'label' | 'comment'>[], layers: LayerBlob[], mtime: number): ImageInput {
  const gpu = lock.image.gpuDriver === 'host';
  const created = new Date(mtime * 1000).toISOString();
  const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
  if (gpu) {
    env.LD_LIBRARY_PATH = GPU_DRIVER_DIR;
    env.NVIDIA_DRIVER_CAPABILITIES = HOST_GPU.capabilities;
  }
  Object.assign(env, lock.image.env);
  const platform = platformForDebianArch(lock.project.arch);
  const config: ImageInput['config'] = {
    created,
    architecture: platform.architecture,
    os: 'linux',
    config: {
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      WorkingDir: '/',
      Labels: {
        'org.opencontainers.image.title': lock.project.name,
        'dev.strata.closure': lock.closure,
        'dev.strata.channels': lock.channels.map((c) => `${c.name}=${c.suite}@${c.releaseSha256.slice(0, 12)}`).join(' '),
        ...(gpu ? { 'dev.strata.gpu-driver': 'host' } : {}),
      },
      ...(lock.image.entrypoint ? { Entrypoint: lock.image.entrypoint } : {}),
      ...(lock.image.cmd ? { Cmd: lock.image.cmd } : lock.image.entrypoint ? {} : { Cmd: ['/bin/sh'] }),
    },
    history: jobs.map((j) => ({ created, created_by: `strata realise: ${j.label}`, comment: j.comment })),
  };
  if (platform.variant) (config as { variant?: string }).variant = platform.variant;
  return { layers, config, annotations: { 'org.opencontainers.image.created': created, 'dev.strata.closure': lock.closure }, refName: defaultTag(lock).split(':')[1]! };
}
