/** Hashes of whole byte strings. (Streams keep their own incremental hash.) */
import { createHash } from 'node:crypto';

/** The sha256 of `data` as 64 lower-case hex digits. */
export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The sha256 of `data` as an OCI digest, `sha256:<hex>`. */
export function sha256Digest(data: string | Buffer): string {
  return `sha256:${sha256Hex(data)}`;
}
