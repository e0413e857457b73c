/**
 * Where a realised image goes. Each sink first checks that it can take an image at all (before anything is built),
 * then takes the image in the encodings realise made and the reference it is to carry, writes or sends it, and
 * returns the line to tell the user. A registry push joins them here.
 */
import type Dockerode from 'dockerode';
import type { Reporter } from '../../report/reporter.ts';
import { checkOciLayoutTarget, writeOciLayout } from './layout.ts';
import { checkDockerArchiveTarget, writeDockerArchive } from './archive.ts';
import { repoTag, type Reference } from './reference.ts';
import type { ImageEncodings } from './image.ts';

export interface ImageSink {
  /** Fails with the user's error when the destination cannot take the image; changes nothing there. */
  check(): Promise<void>;
  write(img: ImageEncodings, ref: Reference): Promise<string>;
}

/** An OCI image layout directory; the image's ref name there is the reference's tag. */
export function ociLayoutSink(dir: string): ImageSink {
  return {
    check: () => checkOciLayoutTarget(dir, '--oci'),
    async write(img, ref) {
      await writeOciLayout(dir, { ...img.image, refName: ref.tag }, '--oci');
      return `wrote OCI layout ${dir} (ref ${ref.tag})`;
    },
  };
}

/** One tar that `docker load` and OCI tools read, tagged with the reference. */
export function dockerArchiveSink(file: string): ImageSink {
  return {
    check: () => checkDockerArchiveTarget(file, '--docker-archive'),
    async write(img, ref) {
      await writeDockerArchive(file, img.image, repoTag(ref), '--docker-archive');
      return `wrote ${file} (docker load -i, or oci-archive: for OCI tools) as ${repoTag(ref)}`;
    },
  };
}

/** The Docker engine, through its API; always the uncompressed layers (nothing gains from compression over a local socket). */
export function dockerLoadSink(docker: Dockerode, reporter: Reporter): ImageSink {
  return {
    check: async () => {},
    async write(img, ref) {
      const tag = repoTag(ref);
      // Loaded only for --load: the Docker client (dockerode, ssh2) is a tenth of a warm realise's time to import.
      const { loadImage } = await import('./dockerLoad.ts');
      const r = await loadImage(img.plain, tag, { docker, reporter });
      return `loaded ${tag} into Docker (${r.imageId.slice(0, 19)}; ${r.sentLayers} layers sent, ${r.skippedLayers} already there)`;
    },
  };
}
