/**
 * Reading a file the user names (the manifest, a channel's keyring, the lockfile): regular files only, and at most
 * a given number of bytes. Without that, `/dev/zero` fills memory and a FIFO blocks forever.
 *
 * The file is opened non-blocking (so opening a FIFO with no writer returns at once) and its type is checked on
 * the open descriptor (so a symlink to a device is judged by what it points at, with no race between check and
 * read). Errors keep node:fs's shape: `code` is the errno code (ENOENT when the file is absent, so callers can
 * treat a missing file as they already do), or E_NOT_REGULAR / E_TOO_LARGE, and the message does not repeat the
 * path: callers say which file it was, e.g. `cannot read <path>: <message>`.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';

export class FileReadError extends Error {
  readonly code: 'E_NOT_REGULAR' | 'E_TOO_LARGE';
  constructor(code: 'E_NOT_REGULAR' | 'E_TOO_LARGE', message: string) {
    super(message);
    this.name = 'FileReadError';
    this.code = code;
  }
}

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;
const CHUNK = 1 << 16;

function kind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

export function formatLimit(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1 << 10 && bytes % (1 << 10) === 0) return `${bytes / (1 << 10)} KiB`;
  return `${bytes} bytes`;
}

function check(st: Stats, maxBytes: number): void {
  if (!st.isFile()) throw new FileReadError('E_NOT_REGULAR', `it is ${kind(st)}, not a regular file`);
  if (st.size > maxBytes) throw new FileReadError('E_TOO_LARGE', `it is ${st.size} bytes, over the limit of ${formatLimit(maxBytes)}`);
}

function tooLarge(maxBytes: number): FileReadError {
  // A file that grew while being read, or one whose size stat does not tell (procfs reports 0).
  return new FileReadError('E_TOO_LARGE', `it holds more than the limit of ${formatLimit(maxBytes)}`);
}

/** The whole content of the regular file at `path`, refusing more than `maxBytes`. */
export function readBoundedSync(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    check(fstatSync(fd), maxBytes);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, maxBytes - total + 1));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      total += n;
      if (total > maxBytes) throw tooLarge(maxBytes);
      chunks.push(buf.subarray(0, n));
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

/** The whole content of the regular file at `path`, refusing more than `maxBytes`. */
export async function readBounded(path: string, maxBytes: number): Promise<Buffer> {
  const fh = await open(path, FLAGS);
  try {
    check(await fh.stat(), maxBytes);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, maxBytes - total + 1));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooLarge(maxBytes);
      chunks.push(buf.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, total);
  } finally {
    await fh.close();
  }
}
