/** Writing output files whole: through a temp name beside the target and a rename. */
import { constants as fsConstants, createReadStream, createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { copyFile, rename, unlink, writeFile } from 'node:fs/promises';
import { statOrNull, tempName } from '../../util/outputs.ts';
import type { LayerBlob } from './image.ts';

export { statOrNull, tempName } from '../../util/outputs.ts';

/** Writes `bytes` to `path` through a temp file and a rename, so readers never see a partial file. */
export async function writeAtomically(path: string, bytes: Buffer): Promise<void> {
  const tmp = tempName(path);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** A fresh stream of a layer's bytes: its file, or its bytes made again (checked as they go). */
export function layerStream(layer: LayerBlob): Readable {
  if (layer.path !== undefined) return createReadStream(layer.path, { highWaterMark: 1 << 20 });
  if (layer.read) return layer.read();
  throw new Error(`layer ${layer.digest} has neither a file nor a way to make its bytes`);
}

/** Checks that a layer's file is there with its descriptor's size (a layer made on demand is checked as it streams). */
export async function checkLayerFile(layer: LayerBlob): Promise<void> {
  if (layer.path === undefined) return;
  const st = await statOrNull(layer.path);
  if (st === null) throw new Error(`layer blob ${layer.path} is missing`);
  if (st.size !== layer.size) throw new Error(`layer blob ${layer.path} is ${st.size} bytes, its descriptor says ${layer.size}`);
}

/**
 * Puts a copy of a layer at `path` (of its file: a reflink where the filesystem can, else a plain copy, never a hard
 * link, as the output is the user's to change and a change there must never reach the store; of a layer made on
 * demand: its stream, whole and checked, before the rename).
 */
export async function placeLayer(layer: LayerBlob, path: string): Promise<void> {
  if (layer.path === undefined) {
    const tmp = tempName(path);
    try {
      await pipeline(layerStream(layer), createWriteStream(tmp));
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
    return;
  }
  const st = await statOrNull(layer.path);
  if (st === null) throw new Error(`layer blob ${layer.path} is missing`);
  if (st.size !== layer.size) {
    throw new Error(`layer blob ${layer.path} is ${st.size} bytes, its descriptor says ${layer.size}`);
  }
  const tmp = tempName(path);
  try {
    await copyFile(layer.path, tmp, fsConstants.COPYFILE_FICLONE);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
