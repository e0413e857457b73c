import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { StrataError } from '../errors.ts';
import { defaultCacheDir, httpGet, openStore, type StoreOptions } from '../store/store.ts';

const fast: StoreOptions = { retries: 2, backoffMs: 10, connectTimeoutMs: 2000, idleTimeoutMs: 2000 };

function blob(n: number): { data: Buffer; sha256: string } {
  const data = randomBytes(n);
  return { data, sha256: createHash('sha256').update(data).digest('hex') };
}

interface Server {
  url: string;
  requests: http.IncomingMessage[];
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1; `handler` gets the 0-based request number. */
async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void): Promise<Server> {
  const requests: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req);
    handler(req, res, requests.length - 1);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Serves `data` at any path, honouring `Range: bytes=N-`. */
function sendBlob(data: Buffer) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      const start = Number(m[1]);
      res.writeHead(206, { 'content-length': data.length - start, 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` });
      res.end(data.subarray(start));
    } else {
      res.writeHead(200, { 'content-length': data.length });
      res.end(data);
    }
  };
}

/** Sends the headers for the whole blob and the first half of it, then kills the connection. */
function dieMidBody(data: Buffer) {
  return (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(200, { 'content-length': data.length });
    res.write(data.subarray(0, data.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
  };
}

/** A new empty directory, removed after the test. */
async function freshRoot(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function ls(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** Every file in blobs/ is complete: its name is the sha256 of its bytes. */
async function assertBlobsComplete(t: { is(a: unknown, b: unknown, m?: string): void }, root: string): Promise<void> {
  const dir = join(root, 'blobs', 'sha256');
  for (const name of await readdir(dir)) {
    const got = createHash('sha256').update(await readFile(join(dir, name))).digest('hex');
    t.is(got, name, `blob ${name} is complete`);
  }
}

async function refusedUrl(): Promise<string> {
  const s = await serve(() => {});
  await s.close();
  return s.url;
}

test('fetch downloads, verifies and stores a blob; a second fetch makes no request', async (t) => {
  const { data, sha256 } = blob(300_000);
  const srv = await serve(sendBlob(data));
  t.teardown(() => srv.close());
  const root = await freshRoot(t);
  const store = await openStore(root, fast);
  let bytes = 0;
  const p = await store.fetch({ urls: [`${srv.url}/pool/a.deb`], sha256, size: data.length, label: 'a 1.0', onBytes: (n) => (bytes += n) });
  t.is(p, join(root, 'blobs', 'sha256', sha256));
  t.deepEqual(await readFile(p), data);
  t.is(bytes, data.length);
  t.deepEqual(await ls(join(root, 'tmp')), []);
  t.is(await store.has(sha256), p);
  t.is(await store.has(sha256, data.length + 1), undefined);

  const again = await store.fetch({ urls: [`${srv.url}/pool/a.deb`], sha256, size: data.length, label: 'a 1.0' });
  t.is(again, p);
  const reopened = await openStore(root, fast);
  t.is(await reopened.fetch({ urls: [`${srv.url}/pool/a.deb`], sha256, label: 'a 1.0' }), p);
  t.is(srv.requests.length, 1);
});

test('503 twice, then success: retried on the same URL', async (t) => {
  const { data, sha256 } = blob(10_000);
  const srv = await serve((req, res, n) => {
    if (n < 2) {
      res.writeHead(503).end('busy');
    } else sendBlob(data)(req, res);
  });
  t.teardown(() => srv.close());
  const store = await openStore(await freshRoot(t), fast);
  const p = await store.fetch({ urls: [`${srv.url}/x`], sha256, size: data.length, label: 'x' });
  t.deepEqual(await readFile(p), data);
  t.is(srv.requests.length, 3);
});

test('404 on the first URL moves to the second at once; connection refused is retried then skipped', async (t) => {
  const { data, sha256 } = blob(10_000);
  const missing = await serve((_req, res) => void res.writeHead(404).end());
  const good = await serve(sendBlob(data));
  t.teardown(() => Promise.all([missing.close(), good.close()]));
  const store = await openStore(await freshRoot(t), fast);
  const p = await store.fetch({ urls: [`${missing.url}/x`, `${good.url}/x`], sha256, size: data.length, label: 'x' });
  t.deepEqual(await readFile(p), data);
  t.is(missing.requests.length, 1);
  t.is(good.requests.length, 1);

  const other = blob(5000);
  const good2 = await serve(sendBlob(other.data));
  t.teardown(() => good2.close());
  const p2 = await store.fetch({ urls: [`${await refusedUrl()}/x`, `${good2.url}/x`], sha256: other.sha256, label: 'y' });
  t.deepEqual(await readFile(p2), other.data);
});

test('wrong bytes: E_HASH naming the label and both hashes, no other mirror tried, nothing stored', async (t) => {
  const { data, sha256 } = blob(20_000);
  const evil = blob(20_000);
  const bad = await serve(sendBlob(evil.data));
  const good = await serve(sendBlob(data));
  t.teardown(() => Promise.all([bad.close(), good.close()]));
  const root = await freshRoot(t);
  const store = await openStore(root, fast);
  const err = await t.throwsAsync(store.fetch({ urls: [`${bad.url}/x`, `${good.url}/x`], sha256, size: data.length, label: 'libc6 2.36-9' }), {
    instanceOf: StrataError,
  });
  t.is(err?.code, 'E_HASH');
  t.regex(err!.message, /libc6 2\.36-9/);
  t.true(err!.message.includes(sha256));
  t.true(err!.message.includes(evil.sha256));
  t.is(good.requests.length, 0);
  t.deepEqual(await ls(join(root, 'blobs', 'sha256')), []);
  t.deepEqual(await ls(join(root, 'tmp')), []);
});

test('wrong size: E_HASH from the declared length, and from a body that overruns without one', async (t) => {
  const { data, sha256 } = blob(20_000);
  const declared = await serve(sendBlob(data));
  const chunked = await serve((_req, res) => {
    res.writeHead(200); // no Content-Length: chunked
    res.write(data);
    res.end(data);
  });
  t.teardown(() => Promise.all([declared.close(), chunked.close()]));
  const root = await freshRoot(t);
  const store = await openStore(root, fast);
  const e1 = await t.throwsAsync(store.fetch({ urls: [`${declared.url}/x`], sha256, size: data.length - 1, label: 'short' }), { instanceOf: StrataError });
  t.is(e1?.code, 'E_HASH');
  t.regex(e1!.message, /size mismatch.*expected 19999 bytes.*20000 bytes/);
  const e2 = await t.throwsAsync(store.fetch({ urls: [`${chunked.url}/x`], sha256, size: data.length, label: 'long' }), { instanceOf: StrataError });
  t.is(e2?.code, 'E_HASH');
  t.regex(e2!.message, /size mismatch/);
  t.deepEqual(await ls(join(root, 'blobs', 'sha256')), []);
  t.deepEqual(await ls(join(root, 'tmp')), []);
});

test('a server that dies mid-body: the retry resumes with a Range request', async (t) => {
  const { data, sha256 } = blob(400_000);
  const srv = await serve((req, res, n) => (n === 0 ? dieMidBody(data)(req, res) : sendBlob(data)(req, res)));
  t.teardown(() => srv.close());
  const store = await openStore(await freshRoot(t), fast);
  let bytes = 0;
  const p = await store.fetch({ urls: [`${srv.url}/x`], sha256, size: data.length, label: 'x', onBytes: (n) => (bytes += n) });
  t.deepEqual(await readFile(p), data);
  t.is(srv.requests.length, 2);
  t.regex(srv.requests[1]!.headers.range ?? '', /^bytes=[1-9]\d*-$/);
  t.is(bytes, data.length);
});

test('a server that dies mid-body and then ignores Range: the download restarts from zero', async (t) => {
  const { data, sha256 } = blob(400_000);
  const srv = await serve((req, res, n) => {
    if (n === 0) return dieMidBody(data)(req, res);
    res.writeHead(200, { 'content-length': data.length });
    res.end(data);
  });
  t.teardown(() => srv.close());
  const store = await openStore(await freshRoot(t), fast);
  let bytes = 0;
  const p = await store.fetch({ urls: [`${srv.url}/x`], sha256, size: data.length, label: 'x', onBytes: (n) => (bytes += n) });
  t.deepEqual(await readFile(p), data);
  t.is(bytes, data.length, 'progress never counts a byte twice');
});

test('a server that always dies mid-body: E_FETCH after the retries, no temp file left', async (t) => {
  const { data, sha256 } = blob(400_000);
  const srv = await serve((req, res) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    res.writeHead(m ? 206 : 200, {
      'content-length': data.length - start,
      ...(m && { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` }),
    });
    res.write(data.subarray(start, start + 1000), () => setTimeout(() => res.socket?.destroy(), 20));
  });
  t.teardown(() => srv.close());
  const root = await freshRoot(t);
  const store = await openStore(root, fast);
  const err = await t.throwsAsync(store.fetch({ urls: [`${srv.url}/x`], sha256, size: data.length, label: 'flaky 1.0' }), { instanceOf: StrataError });
  t.is(err?.code, 'E_FETCH');
  t.regex(err!.message, /flaky 1\.0/);
  t.is(srv.requests.length, 3);
  t.deepEqual(await ls(join(root, 'tmp')), []);
  t.deepEqual(await ls(join(root, 'blobs', 'sha256')), []);
});

test('a stalled body hits the idle timeout and is retried', async (t) => {
  const { data, sha256 } = blob(10_000);
  const srv = await serve((req, res, n) => {
    if (n === 0) {
      res.writeHead(200, { 'content-length': data.length });
      res.write(data.subarray(0, 100)); // then nothing
    } else sendBlob(data)(req, res);
  });
  t.teardown(() => srv.close());
  const store = await openStore(await freshRoot(t), { ...fast, idleTimeoutMs: 300 });
  const p = await store.fetch({ urls: [`${srv.url}/x`], sha256, label: 'x' });
  t.deepEqual(await readFile(p), data);
  // At least one retry; on a loaded machine (the suite's other tests sharing two cores) a retry can stall past the
  // 300 ms too, and is retried again (seen once in CI: 3 requests).
  t.true(srv.requests.length >= 2, `${srv.requests.length} requests`);
});

test('concurrent fetches of the same blob hit the server once', async (t) => {
  const { data, sha256 } = blob(100_000);
  const srv = await serve((req, res) => void setTimeout(() => sendBlob(data)(req, res), 100));
  t.teardown(() => srv.close());
  const store = await openStore(await freshRoot(t), fast);
  const paths = await Promise.all(Array.from({ length: 6 }, () => store.fetch({ urls: [`${srv.url}/x`], sha256, size: data.length, label: 'x' })));
  t.is(new Set(paths).size, 1);
  t.is(srv.requests.length, 1);
});

test('redirects are followed and file:// URLs work like a mirror', async (t) => {
  const { data, sha256 } = blob(10_000);
  const srv = await serve((req, res) => {
    if (req.url === '/old') res.writeHead(302, { location: '/new' }).end();
    else sendBlob(data)(req, res);
  });
  t.teardown(() => srv.close());
  const store = await openStore(await freshRoot(t), fast);
  t.deepEqual(await readFile(await store.fetch({ urls: [`${srv.url}/old`], sha256, label: 'x' })), data);
  t.is(srv.requests.at(-1)!.url, '/new');

  const mirror = await freshRoot(t);
  const other = blob(5000);
  await writeFile(join(mirror, 'b.deb'), other.data);
  const store2 = await openStore(await freshRoot(t), fast);
  const base = pathToFileURL(mirror).href;
  const p = await store2.fetch({ urls: [`${base}/missing.deb`, `${base}/b.deb`], sha256: other.sha256, size: other.data.length, label: 'b' });
  t.deepEqual(await readFile(p), other.data);
});

test('put stores verified bytes; tmpDir is inside the store; stale temp files go at open', async (t) => {
  const root = await freshRoot(t);
  const store = await openStore(root, fast);
  const { data, sha256 } = blob(1000);
  const p = await store.put(data);
  t.is(p, join(root, 'blobs', 'sha256', sha256));
  t.is(await store.put(data, sha256), p);
  const err = await t.throwsAsync(store.put(data, 'ab'.repeat(32)), { instanceOf: StrataError });
  t.is(err?.code, 'E_HASH');

  const scratch = await store.tmpDir();
  t.true(scratch.startsWith(join(root, 'tmp') + '/'));
  t.true((await stat(scratch)).isDirectory());

  const stale = join(root, 'tmp', 'old.part');
  const fresh = join(root, 'tmp', 'new.part');
  await writeFile(stale, 'x');
  await writeFile(fresh, 'x');
  const old = new Date(Date.now() - 2 * 24 * 3600 * 1000);
  await utimes(stale, old, old);
  await openStore(root, fast);
  const left = await ls(join(root, 'tmp'));
  t.false(left.includes('old.part'));
  t.true(left.includes('new.part'));
});

test('defaultCacheDir follows STRATA_CACHE_DIR, then XDG_CACHE_HOME', (t) => {
  t.is(defaultCacheDir({ STRATA_CACHE_DIR: '/c/s', XDG_CACHE_HOME: '/x' }), '/c/s');
  t.is(defaultCacheDir({ STRATA_CACHE_DIR: 'rel' }), resolve('rel'));
  t.is(defaultCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/strata');
  t.regex(defaultCacheDir({ XDG_CACHE_HOME: 'relative' }), /\/\.cache\/strata$/);
});

test('httpGet: body, 404 fallback to the next URL, not-found result, retries, unreachable', async (t) => {
  const body = Buffer.from('signed release\n');
  let flaky = 0;
  const srv = await serve((req, res) => {
    if (req.url === '/m/dists/s/InRelease') res.writeHead(200).end(body);
    else if (req.url === '/flaky/f' && flaky++ === 0) res.writeHead(500).end();
    else if (req.url === '/flaky/f') res.writeHead(200).end(body);
    else res.writeHead(404).end();
  });
  t.teardown(() => srv.close());
  const opts = { retries: 1, backoffMs: 10 };
  const ok = await httpGet([`${srv.url}/m/`], 'dists/s/InRelease', opts);
  t.true(ok.ok && ok.body.equals(body) && ok.url === `${srv.url}/m/dists/s/InRelease`);
  const second = await httpGet([`${srv.url}/nothing`, `${srv.url}/m`], '/dists/s/InRelease', opts);
  t.true(second.ok);
  t.deepEqual(await httpGet([`${srv.url}/m`], 'dists/s/Release', opts), { ok: false, status: 404 });
  t.deepEqual(await httpGet([await refusedUrl(), `${srv.url}/m`], 'dists/s/Release', opts), { ok: false, status: 404 });
  t.true((await httpGet([`${srv.url}/flaky`], 'f', opts)).ok);
  const err = await t.throwsAsync(httpGet([await refusedUrl()], 'dists/s/InRelease', opts), { instanceOf: StrataError });
  t.is(err?.code, 'E_FETCH');
  t.regex(err!.message, /ECONNREFUSED/);
});

function canMountTmpfs(): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'strata-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmdirSync(dir);
  }
}

const tmpfs = canMountTmpfs();
(tmpfs ? test : test.skip)(`a full disk gives E_DISK and leaves the store consistent${tmpfs ? '' : ' (skipped: cannot mount a tmpfs here)'}`, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'strata-store-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', root]);
  t.teardown(async () => {
    execFileSync('umount', [root]);
    await rm(root, { recursive: true, force: true });
  });
  const big = blob(256 * 1024);
  const small = blob(1024);
  const srv = await serve((req, res) => sendBlob(req.url === '/big' ? big.data : small.data)(req, res));
  t.teardown(() => srv.close());
  const store = await openStore(root, fast);
  const err = await t.throwsAsync(store.fetch({ urls: [`${srv.url}/big`], sha256: big.sha256, size: big.data.length, label: 'big 1.0' }), {
    instanceOf: StrataError,
  });
  t.is(err?.code, 'E_DISK');
  t.true(err!.message.includes(root));
  t.deepEqual(await ls(join(root, 'tmp')), []);
  t.deepEqual(await ls(join(root, 'blobs', 'sha256')), []);
  const p = await store.fetch({ urls: [`${srv.url}/small`], sha256: small.sha256, label: 'small' });
  t.deepEqual(await readFile(p), small.data);
  await assertBlobsComplete(t, root);
});

test('a process killed mid-download leaves no blob; a fresh fetch in the same store succeeds', async (t) => {
  // More than the store's write batch, so the killed child has bytes on disk.
  const { data, sha256 } = blob(3 << 20);
  let sent!: () => void;
  const halfSent = new Promise<void>((r) => (sent = r));
  const slow = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': data.length });
    res.write(data.subarray(0, data.length >> 1), () => sent()); // and never the rest
  });
  const good = await serve(sendBlob(data));
  t.teardown(() => Promise.all([slow.close(), good.close()]));
  const root = await freshRoot(t);
  const storeUrl = pathToFileURL(resolve(import.meta.dirname, '..', 'store', 'store.ts')).href;
  const script = `
    const { openStore } = await import(${JSON.stringify(storeUrl)});
    const store = await openStore(${JSON.stringify(root)}, { idleTimeoutMs: 60000 });
    await store.fetch({ urls: [${JSON.stringify(`${slow.url}/x`)}], sha256: ${JSON.stringify(sha256)}, label: 'x' });
    console.log('finished');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
  await halfSent;
  // Wait until the child has written some of the body into its temp file.
  const tmp = join(root, 'tmp');
  for (let i = 0; i < 200; i++) {
    const parts = await readdir(tmp).catch(() => [] as string[]);
    if (parts.length > 0 && (await stat(join(tmp, parts[0]!))).size > 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  t.is(await exited, 'SIGKILL', out);
  t.deepEqual(await ls(join(root, 'blobs', 'sha256')), []);
  t.is((await ls(tmp)).length, 1, 'the killed download left its temp file');

  const store = await openStore(root, fast);
  t.is(await store.has(sha256), undefined);
  const p = await store.fetch({ urls: [`${good.url}/x`], sha256, size: data.length, label: 'x' });
  t.deepEqual(await readFile(p), data);
  t.deepEqual(await ls(join(root, 'blobs', 'sha256')), [sha256]);
  await assertBlobsComplete(t, root);
});
