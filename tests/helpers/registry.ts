/**
 * A private OCI distribution registry for tests: Debian's `docker-registry` (the reference implementation,
 * /usr/bin/docker-registry) on a free loopback port, with its own storage directory and config YAML under a fresh
 * temp dir; plain, or with htpasswd Basic auth (the bcrypt line written by `htpasswd -B` from apache2-utils).
 * Also a loopback proxy in front of one that flips a byte of every blob it serves.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export interface Registry {
  /** `127.0.0.1:PORT`, the reference's registry part. */
  host: string;
  port: number;
  dir: string;
  /** What the registry logged so far (its access log too, with `accessLog`). */
  log(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function answers(port: number, host = '127.0.0.1', tls = false): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = (tls ? https : http).get({ host, port, path: '/v2/', timeout: 1000, ...(tls ? { rejectUnauthorized: false } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
  });
}

/** Whether the registry binary is installed (scripts/setup-host.sh installs it). */
export function haveRegistry(): boolean {
  return existsSync(REGISTRY_BIN);
}

/** Starts a registry; with `auth`, only that user and password get in (htpasswd, bcrypt). */
export async function startRegistry(o: { auth?: { user: string; password: string }; tls?: { cert: string; key: string; host: string }; accessLog?: boolean } = {}): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-registry-'));
  const port = await freePort();
  const ip = o.tls?.host ?? '127.0.0.1';
  const lines = ['version: 0.1', 'log:', '  level: warn', '  accesslog:', `    disabled: ${o.accessLog ? 'false' : 'true'}`, 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'storage')}`, 'http:', `  addr: ${ip}:${port}`, ...(o.tls ? ['  tls:', `    certificate: ${o.tls.cert}`, `    key: ${o.tls.key}`] : [])];
  if (o.auth) {
    const line = execFileSync('htpasswd', ['-Bbn', o.auth.user, o.auth.password], { encoding: 'utf8' }).trim();
    writeFileSync(join(dir, 'htpasswd'), `${line}\n`);
    lines.push('auth:', '  htpasswd:', '    realm: strata-test', `    path: ${join(dir, 'htpasswd')}`);
  }
  writeFileSync(join(dir, 'config.yml'), `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const deadline = Date.now() + 20_000;
  while ((await answers(port, ip, o.tls !== undefined)) === undefined) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not start on port ${port}: ${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `${ip}:${port}`,
    port,
    dir,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A Docker config directory holding `auths` for `host` (base64 user:password), for DOCKER_CONFIG. */
export function dockerConfig(host: string, user: string, password: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'strata-docker-config-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } }));
  return dir;
}

export interface Proxy {
  host: string;
  /** Blob bodies served (and damaged) so far. */
  flipped(): number;
  close(): Promise<void>;
}

/** A loopback HTTP proxy to `target` (host:port) that flips the last byte of every blob body (`/blobs/sha256:` GETs). */
export async function flippingProxy(target: string): Promise<Proxy> {
  const [thost, tport] = target.split(':') as [string, string];
  let flipped = 0;
  const server = http.createServer((req, res) => {
    const up = http.request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers }, (ures) => {
      const isBlob = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '') && ures.statusCode === 200;
      if (!isBlob) {
        res.writeHead(ures.statusCode ?? 502, ures.headers);
        ures.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      ures.on('data', (c: Buffer) => chunks.push(c));
      ures.on('end', () => {
        const body = Buffer.concat(chunks);
        if (body.length > 0) body[body.length - 1] = body[body.length - 1]! ^ 0x01;
        flipped++;
        const headers = { ...ures.headers };
        delete headers['transfer-encoding'];
        headers['content-length'] = String(body.length);
        res.writeHead(200, headers);
        res.end(body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    flipped: () => flipped,
    close: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

/** The digest of the only manifest in an OCI layout's index.json. */
export function layoutDigest(dir: string): string {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  if (index.manifests.length !== 1) throw new Error(`${dir} holds ${index.manifests.length} manifests`);
  return index.manifests[0]!.digest;
}

export interface BearerProxy extends Proxy {
  /** The scopes the token endpoint was asked for, in order. */
  scopes: string[];
}

/**
 * A loopback front for `target` that speaks the Bearer token flow, as hosted registries do: any /v2/ request without
 * its token gets 401 with `WWW-Authenticate: Bearer realm=".../token",service="strata-test",scope=...`; the token
 * endpoint hands out the token only for Basic `user:password`; requests with the token are forwarded.
 */
export async function bearerProxy(target: string, user: string, password: string): Promise<BearerProxy> {
  const [thost, tport] = target.split(':') as [string, string];
  const token = `tok-${Math.random().toString(36).slice(2)}`;
  const scopes: string[] = [];
  let port = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    if (url.pathname === '/token') {
      scopes.push(url.searchParams.get('scope') ?? '');
      const ok = req.headers.authorization === `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` && url.searchParams.get('service') === 'strata-test';
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(ok ? JSON.stringify({ token, expires_in: 300 }) : '{"errors":[{"code":"UNAUTHORIZED"}]}');
      return;
    }
    if (req.headers.authorization !== `Bearer ${token}`) {
      const name = /^\/v2\/(.+?)\/(?:blobs|manifests|tags)\//.exec(url.pathname)?.[1];
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="strata-test"${name ? `,scope="repository:${name}:pull"` : ''}`, 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
      req.resume();
      return;
    }
    const headers = { ...req.headers };
    delete headers.authorization;
    const up = http.request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers }, (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      ures.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    scopes,
    flipped: () => 0,
    close: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

/** A test CA (made now with the host's openssl) and a server certificate it signed for the IP address `ip`. */
export function testCa(ip: string): { dir: string; ca: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'strata-ca-'));
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=strata test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${ip}`);
  writeFileSync(f('ext.cnf'), `subjectAltName=IP:${ip}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`);
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'));
  return { dir, ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

export interface DroppingProxy {
  host: string;
  /** Uploads cut so far. */
  dropped(): number;
  /** How many more uploads to cut (Infinity: every one). */
  setDrops(n: number): void;
  /** Body bytes of uploads (PUT and PATCH) that reached the registry. */
  forwarded(): number;
  close(): Promise<void>;
}

export interface DropOptions {
  /**
   * Where a cut upload stops: after half of its body (the default), before any of it reaches the registry, or
   * after all of it did, with the registry's answer lost on the way back.
   */
  at?: 'half' | 'start' | 'answer';
  /** Cut only PATCHes (chunks), only PUTs, or both (the default). */
  only?: 'PATCH' | 'PUT';
  /** Let this many uploads with a body through before cutting (default 0). */
  after?: number;
}

/**
 * A loopback HTTP proxy to `target` that acts as a registry dying mid-upload: for each of the next `drops` blob
 * uploads that carry a body (a PUT or PATCH under `/blobs/uploads/`), it forwards half of the body (none of it
 * with `at: 'start'`, all of it with `at: 'answer'`), then cuts both connections (the client sees a reset socket,
 * the registry a truncated request, nothing, or the whole request). Everything else passes through.
 */
export async function droppingProxy(target: string, drops: number, o: DropOptions = {}): Promise<DroppingProxy> {
  const [thost, tport] = target.split(':') as [string, string];
  let left = drops;
  let dropped = 0;
  let forwarded = 0;
  let passed = 0;
  const server = http.createServer((req, res) => {
    const length = Number(req.headers['content-length'] ?? 0);
    const upload = (req.method === 'PUT' || req.method === 'PATCH') && /\/blobs\/uploads\//.test(req.url ?? '') && length > 0;
    const cut = upload && (o.only === undefined || req.method === o.only) && left > 0 && passed++ >= (o.after ?? 0);
    if (cut && o.at === 'start') {
      left--;
      dropped++;
      req.socket.destroy();
      return;
    }
    const up = http.request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers }, (ures) => {
      if (cut && o.at === 'answer') {
        ures.resume();
        req.socket.destroy();
        return;
      }
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      ures.pipe(res);
    });
    up.on('error', () => res.destroy());
    if (cut) {
      left--;
      dropped++;
    }
    if (!cut || o.at === 'answer') {
      if (upload) req.on('data', (c: Buffer) => (forwarded += c.length));
      req.pipe(up);
      return;
    }
    let sent = 0;
    req.on('data', (c: Buffer) => {
      if (sent >= length / 2) return;
      const part = c.subarray(0, Math.max(0, Math.ceil(length / 2) - sent));
      sent += part.length;
      forwarded += part.length;
      up.write(part);
      if (sent >= length / 2) {
        up.destroy();
        req.socket.destroy();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    dropped: () => dropped,
    setDrops: (n) => (left = n),
    forwarded: () => forwarded,
    close: () => new Promise((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}
