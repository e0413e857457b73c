/**
 * Writes an image into an OCI image layout directory (image-spec 1.1): `oci-layout` first, then the blobs, `index.json`
 * last, each whole; a run that fails takes back what it added, and one that was killed is cleaned up by the next.
 */
import { readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../errors.ts';
import { ANNOTATION_REF_NAME, IMAGE_LAYOUT_FILE, IMAGE_LAYOUT_VERSION, MEDIA_TYPE_IMAGE_INDEX, canonicalJson } from './spec.ts';
import type { ImageIndex, ImageLayout } from './spec.ts';
import { hexOf, manifestDescriptor, type BuiltImage } from './image.ts';
import { placeLayer, statOrNull, writeAtomically } from './files.ts';
import { makeDirs, onOutput, outputError, outputRefused, removeStaleTemps, tempName, undo, type Output } from '../../util/outputs.ts';

async function readLayoutIndex(path: string): Promise<ImageIndex | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new StrataError('E_USAGE', `${path} is not valid JSON`, 'remove the image layout directory or choose another');
  }
  const index = parsed as Partial<ImageIndex>;
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray(index.manifests)) {
    throw new StrataError('E_USAGE', `${path} is not an OCI image index`, 'remove the image layout directory or choose another');
  }
  return parsed as ImageIndex;
}

/** What is in a would-be layout directory: nothing (or only what an interrupted strata run leaves), or a layout. */
type LayoutState = 'missing' | 'empty' | 'layout';

/** Whether `dir` holds nothing but dotfiles (temp files) and directories that do too. */
async function holdsNothing(dir: string, subdirs: Record<string, Record<string, null> | null>): Promise<boolean> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (!(entry.name in subdirs) || !entry.isDirectory()) return false;
    const below = subdirs[entry.name];
    if (!(await holdsNothing(join(dir, entry.name), below ?? {}))) return false;
  }
  return true;
}

/**
 * Classifies `dir`: missing, empty, or an image layout. A directory holding only dotfiles and an empty `blobs/sha256/`
 * tree (what a run that stopped before writing `oci-layout` left) counts as empty. Anything else is refused.
 */
async function layoutState(dir: string, out: Output): Promise<LayoutState> {
  const st = await statOrNull(dir);
  if (st === null) return 'missing';
  if (!st.isDirectory()) throw outputRefused(out, 'it exists and is not a directory', true);
  const layoutPath = join(dir, IMAGE_LAYOUT_FILE);
  let existing: string | null = null;
  try {
    existing = await readFile(layoutPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (existing === null) {
    if (!(await holdsNothing(dir, { blobs: { sha256: null } }))) {
      throw new StrataError(
        'E_USAGE',
        `${dir} is not empty and is not an OCI image layout`,
        'write the image to a new or empty directory',
      );
    }
    return 'empty';
  }
  let version: unknown;
  try {
    version = (JSON.parse(existing) as Partial<ImageLayout>).imageLayoutVersion;
  } catch {
    version = undefined;
  }
  if (version !== IMAGE_LAYOUT_VERSION) {
    throw new StrataError('E_USAGE', `${layoutPath} does not declare image layout version ${IMAGE_LAYOUT_VERSION}`);
  }
  return 'layout';
}

function outputOf(dir: string, option: string | undefined): Output {
  return option === undefined ? { what: 'the OCI image layout', path: dir } : { what: 'the OCI image layout', path: dir, option };
}

/**
 * Checks, before anything is built, that the image can go to `dir`: it is (or can be created as) a directory that is
 * empty or an image layout, and a file can be created in it. Leaves `dir` as it was.
 */
export async function checkOciLayoutTarget(dir: string, option?: string): Promise<void> {
  const out = outputOf(dir, option);
  await onOutput(out, async () => {
    if ((await layoutState(dir, out)) === 'missing') {
      await undo(await makeDirs(dir, out), []);
      return;
    }
    const probe = tempName(join(dir, IMAGE_LAYOUT_FILE));
    await writeFile(probe, '', { flag: 'wx' });
    await unlink(probe);
  });
}

/**
 * Writes `img` into the OCI image layout at `dir` (created when missing). `oci-layout` goes first, then the
 * blobs, each through a temp file and a rename, and blobs already present with the right size are kept;
 * `index.json` is replaced last, so a reader sees either the old index or the new one, both complete. A
 * failure (a full disk, say) removes what this run added, leaving `dir` as it was; temp files of runs that
 * were killed are removed by the next run, and a directory holding only those and an empty `blobs/` tree
 * counts as empty. Filesystem errors become the user's error naming `dir` (`option`, e.g. `--oci`, marks it
 * as given on the command line: a wrong kind of path is then E_USAGE). In an existing
 * layout, an entry with the same ref name (or, without one, the same manifest digest and no ref name) is
 * replaced and every other entry is kept; blobs only the replaced entry used are left in place (an OCI
 * garbage collection, e.g. `umoci gc`, removes them). Two processes writing the same layout at the same
 * time can lose one's index update, and one that fails can take back a blob the other found in place.
 */
export async function writeOciLayout(dir: string, img: BuiltImage, option?: string): Promise<void> {
  const out = outputOf(dir, option);
  const madeDirs: string[] = [];
  const madeFiles: string[] = [];
  try {
    madeDirs.push(...(await makeDirs(dir, out)));
    const state = await layoutState(dir, out);
    const blobDir = join(dir, 'blobs', 'sha256');
    // A killed run's temp files (partial blobs among them) go before this run adds its own.
    await removeStaleTemps(dir);
    await removeStaleTemps(blobDir);
    if (state !== 'layout') {
      // `oci-layout` first: from here on the directory is recognisably a layout, whatever stops this run.
      const layoutPath = join(dir, IMAGE_LAYOUT_FILE);
      const layout: ImageLayout = { imageLayoutVersion: IMAGE_LAYOUT_VERSION };
      await writeAtomically(layoutPath, canonicalJson(layout));
      madeFiles.push(layoutPath);
    }
    madeDirs.push(...(await makeDirs(join(dir, 'blobs'), out)));
    madeDirs.push(...(await makeDirs(blobDir, out)));
    for (const layer of img.layers) {
      const path = join(blobDir, hexOf(layer.digest));
      const st = await statOrNull(path);
      if (st !== null && st.size === layer.size) continue;
      await placeLayer(layer, path);
      if (st === null) madeFiles.push(path);
    }
    for (const [digest, bytes] of [
      [img.configDigest, img.config],
      [img.manifestDigest, img.manifest],
    ] as const) {
      const path = join(blobDir, hexOf(digest));
      const st = await statOrNull(path);
      if (st !== null && st.size === bytes.length) continue;
      await writeAtomically(path, bytes);
      if (st === null) madeFiles.push(path);
    }
    const indexPath = join(dir, 'index.json');
    const previous = await readLayoutIndex(indexPath);
    const refName = img.refName;
    const kept = (previous?.manifests ?? []).filter((d) => {
      const ref = d.annotations?.[ANNOTATION_REF_NAME];
      return refName !== undefined ? ref !== refName : !(ref === undefined && d.digest === img.manifestDigest);
    });
    const index: ImageIndex = {
      ...previous,
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_IMAGE_INDEX,
      manifests: [...kept, manifestDescriptor(img)],
    };
    await writeAtomically(indexPath, canonicalJson(index));
  } catch (e) {
    // Back to what was there: the blobs and directories this run added go, the previous index was never touched.
    await undo(madeDirs, madeFiles);
    throw await outputError(out, e);
  }
}
