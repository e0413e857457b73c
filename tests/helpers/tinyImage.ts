/**
 * A tiny runnable image for OCI and Docker tests: layer 1 (uncompressed tar) holds the host's static
 * busybox as `/bin/busybox` with `/bin/sh` linked to it; layer 2 (gzip) holds `/etc/greeting`. Tars are
 * written with tar-stream and fixed metadata, so the same call gives the same bytes.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import type { Header } from 'tar-stream';
import type { ImageInput, LayerBlob } from '../../realiser/oci/image.ts';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_TAR_GZIP } from '../../realiser/oci/spec.ts';

export const BUSYBOX = '/bin/busybox';
export const GREETING = 'hello from layer two\n';

export type TarEntry = { header: Partial<Header> & { name: string }; body?: Buffer };

/** A tar of `entries`, in order (tar-stream; the headers as given). */
export async function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const { header, body } of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body) pack.entry(header, body, cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const fixed = { mtime: new Date(1_700_000_000_000), uid: 0, gid: 0, uname: 'root', gname: 'root' };

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Writes the two layer blobs into `dir` and describes them. */
export async function makeTinyLayers(dir: string): Promise<LayerBlob[]> {
  const busybox = await readFile(BUSYBOX);
  const base = await tarOf([
    { header: { ...fixed, name: 'bin/', type: 'directory', mode: 0o755 } },
    { header: { ...fixed, name: 'bin/busybox', type: 'file', mode: 0o755, size: busybox.length }, body: busybox },
    { header: { ...fixed, name: 'bin/sh', type: 'symlink', linkname: 'busybox', mode: 0o777 } },
    { header: { ...fixed, name: 'etc/', type: 'directory', mode: 0o755 } },
    { header: { ...fixed, name: 'tmp/', type: 'directory', mode: 0o1777 } },
  ]);
  const greeting = Buffer.from(GREETING);
  const top = await tarOf([
    { header: { ...fixed, name: 'etc/', type: 'directory', mode: 0o755 } },
    { header: { ...fixed, name: 'etc/greeting', type: 'file', mode: 0o644, size: greeting.length }, body: greeting },
  ]);
  const topGz = gzipSync(top, { level: 9 });
  const basePath = join(dir, 'layer-base.tar');
  const topPath = join(dir, 'layer-top.tar.gz');
  await writeFile(basePath, base);
  await writeFile(topPath, topGz);
  return [
    { path: basePath, digest: sha256(base), size: base.length, diffId: sha256(base), mediaType: MEDIA_TYPE_LAYER_TAR },
    { path: topPath, digest: sha256(topGz), size: topGz.length, diffId: sha256(top), mediaType: MEDIA_TYPE_LAYER_TAR_GZIP },
  ];
}

/** An image input over `layers`; `env` varies the config (and so the image ID) between tests. */
export function tinyImageInput(layers: LayerBlob[], opts: { refName?: string; env?: string[] } = {}): ImageInput {
  const input: ImageInput = {
    layers,
    config: {
      created: '2024-01-01T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: {
        Env: opts.env ?? ['PATH=/bin'],
        Cmd: ['/bin/sh'],
        WorkingDir: '/',
        Labels: { 'org.example.test': 'tiny' },
      },
      history: [
        { created: '2024-01-01T00:00:00Z', created_by: 'strata test: busybox', comment: 'layer 1' },
        { created: '2024-01-01T00:00:00Z', created_by: 'strata test: greeting', comment: 'layer 2' },
        { created: '2024-01-01T00:00:00Z', created_by: 'strata test: config', empty_layer: true },
      ],
    },
    annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
  };
  if (opts.refName !== undefined) input.refName = opts.refName;
  return input;
}
