/**
 * A Python package index for tests: wheels zipped by hand (the wheel format: the package's files, a
 * `NAME-VERSION.dist-info` with METADATA, WHEEL and RECORD) with the host's python3, and a PEP 503 "simple"
 * index served on loopback whose pages list the files of `files/` with `#sha256=` links, hashed as they are now
 * (so bytes changed after a lock are served with their new hash, as a re-uploading index would).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const norm = (n: string) => n.toLowerCase().replace(/[-_.]+/g, '-');

/** Writes `files/<dist>-<version>-py3-none-any.whl` under `root`; returns its path. */
export function makeWheel(root: string, o: { name: string; version: string; files: Record<string, string>; requires?: string[] }): string {
  const dist = o.name.replace(/-/g, '_');
  const dir = join(root, 'files');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${dist}-${o.version}-py3-none-any.whl`);
  const info = `${dist}-${o.version}.dist-info`;
  const entries: Record<string, string> = {
    ...o.files,
    [`${info}/METADATA`]: ['Metadata-Version: 2.1', `Name: ${o.name}`, `Version: ${o.version}`, ...(o.requires ?? []).map((r) => `Requires-Dist: ${r}`), ''].join('\n'),
    [`${info}/WHEEL`]: 'Wheel-Version: 1.0\nGenerator: strata-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
  };
  const script = [
    'import base64, hashlib, json, sys, zipfile',
    'out, info, entries = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())',
    'record = []',
    "with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:",
    '    for path in sorted(entries):',
    "        data = entries[path].encode()",
    "        z.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)",
    "        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()",
    "        record.append(f'{path},sha256={digest},{len(data)}')",
    "    record.append(f'{info}/RECORD,,')",
    "    z.writestr(zipfile.ZipInfo(f'{info}/RECORD', (2020, 1, 1, 0, 0, 0)), '\\n'.join(record) + '\\n')",
  ].join('\n');
  execFileSync('python3', ['-c', script, file, info], { input: JSON.stringify(entries) });
  return file;
}

export interface ServedIndex {
  /** The index's simple URL: `http://127.0.0.1:PORT/simple`. */
  url: string;
  /** Request paths served so far. */
  requests: string[];
  close(): Promise<void>;
}

/** Serves `root/files` as a PEP 503 simple index on loopback. */
export async function serveIndex(root: string): Promise<ServedIndex> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    const files = readdirSync(join(root, 'files')).filter((f) => f.endsWith('.whl')).sort();
    const page = /^\/simple\/([^/]+)\/?$/.exec(path);
    if (page) {
      const mine = files.filter((f) => norm(f.split('-')[0]!) === norm(page[1]!));
      if (mine.length === 0) {
        res.writeHead(404).end('not found');
        return;
      }
      const links = mine.map((f) => `<a href="../../files/${encodeURIComponent(f)}#sha256=${createHash('sha256').update(readFileSync(join(root, 'files', f))).digest('hex')}">${f}</a><br/>`);
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!DOCTYPE html>\n<html><body>\n${links.join('\n')}\n</body></html>\n`);
      return;
    }
    const file = /^\/files\/([^/]+)$/.exec(path);
    if (file && files.includes(file[1]!)) {
      const body = readFileSync(join(root, 'files', file[1]!));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
      return;
    }
    res.writeHead(404).end('not found');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/simple`, requests, close: () => new Promise((r) => server.close(() => r())) };
}
