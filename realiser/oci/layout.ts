/**
 * Writes an image into an OCI image layout directory (image-spec 1.1): blobs first, `index.json` last, each whole.
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../errors.ts';
import { ANNOTATION_REF_NAME, IMAGE_LAYOUT_FILE, IMAGE_LAYOUT_VERSION, MEDIA_TYPE_IMAGE_INDEX, canonicalJson } from './spec.ts';
import type { ImageIndex, ImageLayout } from './spec.ts';
import { hexOf, manifestDescriptor, type BuiltImage } from './image.ts';
import { placeLayer, statOrNull, writeAtomically } from './files.ts';

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

/** Prepares `dir` as an image layout, or checks that it already is one. */
async function ensureLayout(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const layoutPath = join(dir, IMAGE_LAYOUT_FILE);
  let existing: string | null = null;
  try {
    existing = await readFile(layoutPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (existing === null) {
    const entries = (await readdir(dir)).filter((n) => !n.startsWith('.'));
    if (entries.length > 0) {
      throw new StrataError(
        'E_USAGE',
        `${dir} is not empty and is not an OCI image layout`,
        'write the image to a new or empty directory',
      );
    }
  } else {
    let version: unknown;
    try {
      version = (JSON.parse(existing) as Partial<ImageLayout>).imageLayoutVersion;
    } catch {
      version = undefined;
    }
    if (version !== IMAGE_LAYOUT_VERSION) {
      throw new StrataError('E_USAGE', `${layoutPath} does not declare image layout version ${IMAGE_LAYOUT_VERSION}`);
    }
  }
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  if (existing === null) {
    const layout: ImageLayout = { imageLayoutVersion: IMAGE_LAYOUT_VERSION };
    await writeAtomically(layoutPath, canonicalJson(layout));
  }
}

/**
 * Writes `img` into the OCI image layout at `dir` (created when missing). Blobs go first, each through a
 * temp file and a rename, and blobs already present with the right size are kept; `index.json` is
 * replaced last, so a reader sees either the old index or the new one, both complete. In an existing
 * layout, an entry with the same ref name (or, without one, the same manifest digest and no ref name) is
 * replaced and every other entry is kept; blobs only the replaced entry used are left in place (an OCI
 * garbage collection, e.g. `umoci gc`, removes them). Two processes writing the same layout at the same
 * time can lose one's index update.
 */
export async function writeOciLayout(dir: string, img: BuiltImage): Promise<void> {
  await ensureLayout(dir);
  const blobDir = join(dir, 'blobs', 'sha256');
  for (const layer of img.layers) {
    const path = join(blobDir, hexOf(layer.digest));
    const st = await statOrNull(path);
    if (st !== null && st.size === layer.size) continue;
    await placeLayer(layer, path);
  }
  for (const [digest, bytes] of [
    [img.configDigest, img.config],
    [img.manifestDigest, img.manifest],
  ] as const) {
    const path = join(blobDir, hexOf(digest));
    const st = await statOrNull(path);
    if (st !== null && st.size === bytes.length) continue;
    await writeAtomically(path, bytes);
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
}
