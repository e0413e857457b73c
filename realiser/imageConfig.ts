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

/** Directories that layers beyond the packages' (recipe outputs) add to the image's search paths, in order. */
export interface SearchPaths {
  bin: string[];
  lib: string[];
  pkgconfig: string[];
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * What `buildImage` needs to make the image of `lock` from `layers` (base first, one per job). `paths`: recipe
 * outputs' `bin` go before PATH (unless already on it), their `lib` on LD_LIBRARY_PATH (before the host GPU
 * driver's directory), their `lib/pkgconfig` on PKG_CONFIG_PATH; the manifest's [env] still has the last word.
 */
export function imageInput(lock: Lockfile, jobs: Pick<LayerJob, 'label' | 'comment'>[], layers: LayerBlob[], mtime: number, paths?: SearchPaths): ImageInput {
  const gpu = lock.image.gpuDriver === 'host';
  const created = new Date(mtime * 1000).toISOString();
  const uniq = (xs: string[]) => xs.filter((x, i) => xs.indexOf(x) === i);
  const bins = uniq(paths?.bin ?? []).filter((d) => !DEFAULT_PATH.split(':').includes(d));
  const env: Record<string, string> = { PATH: [...bins, DEFAULT_PATH].join(':'), LANG: 'C.UTF-8' };
  const libs = uniq([...(paths?.lib ?? []), ...(gpu ? [GPU_DRIVER_DIR] : [])]);
  if (libs.length > 0) env.LD_LIBRARY_PATH = libs.join(':');
  if (gpu) env.NVIDIA_DRIVER_CAPABILITIES = HOST_GPU.capabilities;
  const pkgconfig = uniq(paths?.pkgconfig ?? []);
  if (pkgconfig.length > 0) env.PKG_CONFIG_PATH = pkgconfig.join(':');
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
