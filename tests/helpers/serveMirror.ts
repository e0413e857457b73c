/**
 * Serves a fixture archive directory over HTTP on 127.0.0.1 (a free port), with hooks for failure tests.
 *
 * Paths given to `failNext` and `tamper` are URL paths relative to the archive root, with or without the
 * leading `/` (`dists/strata-stable/InRelease`). Symlinks inside the root are followed (`dists/stable`).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';

export interface ServedMirror {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** URL path of every request received, in order (`/dists/strata-stable/InRelease`). */
  requests: string[];
  close(): Promise<void>;
  /** The next `times` requests for `path` are answered with `status` (default 500) and an empty body. */
  failNext(path: string, times: number, status?: number): void;
  /** Serve `bytes` for `path` instead of the file on disk (which need not exist); `null` serves the file again. */
  tamper(path: string, bytes: Buffer | null): void;
}

function key(path: string): string {
  return path.startsWith('/') ? path : `/${path}`;
}

export async function serveMirror(root: string): Promise<ServedMirror> {
  const base = resolve(root);
  const requests: string[] = [];
  const failures = new Map<string, { times: number; status: number }>();
  const tampered = new Map<string, Buffer>();

  const server = createServer((req, res) => {
    void (async () => {
      let path: string;
      try {
        path = decodeURIComponent(new URL(req.url ?? '/', 'http://fixture').pathname);
      } catch {
        res.writeHead(400).end();
        return;
      }
      requests.push(path);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405).end();
        return;
      }
      const failure = failures.get(path);
      if (failure && failure.times > 0) {
        failure.times--;
        res.writeHead(failure.status, { 'content-length': 0 }).end();
        return;
      }
      let body = tampered.get(path);
      if (!body) {
        const file = resolve(base, `.${path}`);
        const inside = file === base || file.startsWith(base + sep);
        const st = inside ? await stat(file).catch(() => undefined) : undefined;
        if (!st?.isFile()) {
          res.writeHead(404, { 'content-length': 0 }).end();
          return;
        }
        body = await readFile(file);
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    })().catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(e));
    });
  });

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((ok, fail) => {
        server.close((e) => (e ? fail(e) : ok()));
        server.closeAllConnections();
      }),
    failNext(path, times, status = 500) {
      failures.set(key(path), { times, status });
    },
    tamper(path, bytes) {
      if (bytes === null) tampered.delete(key(path));
      else tampered.set(key(path), bytes);
    },
  };
}
