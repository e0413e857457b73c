/**
 * Builds .deb files that dpkg-deb refuses to build: members with `..` or absolute paths, writes through
 * symlinks, device nodes, corrupted streams. A tiny `ar` writer plus tar-stream's pack; compression by
 * the real xz/zstd tools or zlib.
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';

export interface TarMember {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
}

export type Compression = 'xz' | 'zst' | 'gz' | 'none';

/** A tar (GNU/ustar headers as tar-stream writes them) holding `members` in the given order. */
export async function tarOf(members: TarMember[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  })();
  for (const m of members) {
    const type = m.type ?? 'file';
    const header = {
      name: m.name,
      type,
      mode: m.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: 0,
      gid: 0,
      uname: 'root',
      gname: 'root',
      mtime: new Date(0),
      ...(m.linkname !== undefined ? { linkname: m.linkname } : {}),
      ...(type === 'character-device' || type === 'block-device' ? { devmajor: 1, devminor: 3 } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, Buffer.from(m.content ?? ''), cb);
      else pack.entry(header, cb).end(Buffer.alloc(0));
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

export function compress(data: Buffer, how: Compression): Buffer {
  switch (how) {
    case 'xz':
      return execFileSync('xz', ['-c', '-T1'], { input: data, maxBuffer: 1 << 30 });
    case 'zst':
      return execFileSync('zstd', ['-q', '-c'], { input: data, maxBuffer: 1 << 30 });
    case 'gz':
      return gzipSync(data);
    case 'none':
      return data;
  }
}

/** An `ar` archive in the format dpkg-deb writes (`!<arch>\n`, 60-byte headers, even padding). */
export function arOf(members: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [Buffer.from('!<arch>\n', 'latin1')];
  for (const m of members) {
    const h =
      m.name.padEnd(16) + '0'.padEnd(12) + '0'.padEnd(6) + '0'.padEnd(6) + '100644'.padEnd(8) + String(m.data.length).padEnd(10) + '`\n';
    parts.push(Buffer.from(h, 'latin1'), m.data);
    if (m.data.length % 2 === 1) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

export interface EvilDebSpec {
  data: TarMember[];
  compression?: Compression;
  /** Package name written into the control file. */
  packageName?: string;
  /** Rewrites the compressed data member before it is put into the ar archive. */
  mangleData?: (compressed: Buffer) => Buffer;
  debianBinary?: string;
}

export async function evilDebBytes(spec: EvilDebSpec): Promise<Buffer> {
  const how = spec.compression ?? 'xz';
  const name = spec.packageName ?? 'evil';
  const control = await tarOf([
    { name: './', type: 'directory' },
    { name: './control', content: `Package: ${name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: evil\n` },
  ]);
  let data = compress(await tarOf(spec.data), how);
  if (spec.mangleData) data = spec.mangleData(data);
  const suffix = how === 'none' ? '' : `.${how}`;
  return arOf([
    { name: 'debian-binary', data: Buffer.from(spec.debianBinary ?? '2.0\n') },
    { name: `control.tar${suffix}`, data: compress(control, how) },
    { name: `data.tar${suffix}`, data },
  ]);
}

export async function writeEvilDeb(path: string, spec: EvilDebSpec): Promise<void> {
  await writeFile(path, await evilDebBytes(spec));
}
