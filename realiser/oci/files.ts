/** Writing output files whole: through a temp name beside the target and a rename. */
import { constants as fsConstants } from 'node:fs';
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

/**
 * Puts a copy of a layer file at `path` (a reflink where the filesystem can, else a plain copy), never a hard link:
 * the output is the user's to change, and a change there must never reach the store.
 */
export async function placeLayer(layer: LayerBlob, path: string): Promise<void> {
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
