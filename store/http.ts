/**
 * HTTP(S) and file:// GETs with timeouts, redirects and a retry policy. Bodies are streams; nothing here
 * buffers a whole download except `httpGet`, which is for small unverified things (InRelease).
 *
 * Failure classes, shared by `httpGet` and the store's verified fetch:
 * - transient (retried on the same URL with exponential backoff): connection errors, connect or idle
 *   timeouts, a transfer slower than the low-speed limit, a body cut short, HTTP 5xx and 429;
 * - final for this URL (the next URL is tried at once): any other non-2xx status (404, 403, 410...),
 *   an unknown host, a TLS certificate error, an unsupported URL scheme.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { StrataError } from '../errors.ts';
import { BACKOFF_MS, CONNECT_TIMEOUT_MS, IDLE_TIMEOUT_MS, lowSpeedFromEnv, MAX_REDIRECTS, MAX_UNVERIFIED_BYTES, RETRIES } from '../limits.ts';

export interface RetryPolicy {
  /** Extra attempts per URL after the first, for transient failures. */
  retries: number;
  /** Delay before the first retry; doubles for each further one. */
  backoffMs: number;
  /** Time allowed to establish a connection. */
  connectTimeoutMs: number;
  /** Time allowed without any byte arriving (headers or body). */
  idleTimeoutMs: number;
  /** Fewest bytes per second accepted, averaged over any `lowSpeedTimeMs` window of a request; 0: no check. */
  lowSpeedLimit: number;
  lowSpeedTimeMs: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  retries: RETRIES,
  backoffMs: BACKOFF_MS,
  connectTimeoutMs: CONNECT_TIMEOUT_MS,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  ...lowSpeedFromEnv(),
};

/** An answer whose body is still to be read. `body` must be consumed or destroyed. */
export interface OpenResponse {
  status: number;
  /** Lower-cased header names. */
  headers: Record<string, string | undefined>;
  body: Readable;
  /** The URL that answered, after redirects. */
  url: string;
}

/** A failure to get an answer from a URL: `transient` ones are worth retrying on the same URL. */
export class NetworkError extends Error {
  readonly transient: boolean;
  constructor(message: string, transient: boolean) {
    super(message);
    this.name = 'NetworkError';
    this.transient = transient;
  }
}

function isPermanentNetworkCode(code: string | undefined): boolean {
  if (code === undefined) return false;
  return code === 'ENOTFOUND' || /CERT|SELF_SIGNED|ERR_TLS|ERR_SSL/.test(code);
}

function networkError(e: unknown, url: string): NetworkError {
  if (e instanceof NetworkError) return e;
  const err = e as NodeJS.ErrnoException;
  const what = err.code ? `${err.code}${err.message && !err.message.includes(err.code) ? ` (${err.message})` : ''}` : String(err.message ?? e);
  return new NetworkError(`${redact(url)}: ${what}`, !isPermanentNetworkCode(err.code));
}

/** URLs may carry credentials (`https://user:token@host/`); they never appear in messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '***';
      u.password = '';
    }
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Starts a GET and resolves once the status and headers are in. Redirects (3xx with Location, to
 * http or https only) are followed. Rejects with a NetworkError when no answer comes.
 */
export function openGet(url: string, headers: Record<string, string>, policy: RetryPolicy): Promise<OpenResponse> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return Promise.reject(new NetworkError(`not a URL: ${redact(url)}`, false));
  }
  if (parsed.protocol === 'file:') return openFile(parsed, headers);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return Promise.reject(new NetworkError(`${redact(url)}: unsupported URL scheme ${parsed.protocol}`, false));
  }
  return openHttp(parsed, headers, policy, MAX_REDIRECTS);
}

/** A request body: bytes, or a file (re-read from the start on every attempt), or a part of one. */
export type RequestBody = Buffer | { file: string; start?: number; size: number };

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: RequestBody;
  /** Follow 3xx answers with Location (GET and HEAD only; default true for them). */
  followRedirects?: boolean;
}

/**
 * One attempt of any request (HEAD, GET, POST, PUT, PATCH, DELETE), with the same timeouts and failure classes as
 * `openGet`: rejects with a NetworkError (transient or final) when no answer comes, resolves with the status and
 * headers otherwise, whatever the status. The low-speed check counts bytes sent as well as received, so an upload
 * that moves is not cut off. Redirects are followed for GET and HEAD only (a registry answers uploads with 201/202
 * and a Location, which is the caller's to read). The caller retries, with `backoffDelay` and `isTransientStatus`.
 */
export function request(method: string, url: string, opts: RequestOptions, policy: RetryPolicy): Promise<OpenResponse> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return Promise.reject(new NetworkError(`not a URL: ${redact(url)}`, false));
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return Promise.reject(new NetworkError(`${redact(url)}: unsupported URL scheme ${parsed.protocol}`, false));
  }
  const follow = opts.followRedirects ?? (method === 'GET' || method === 'HEAD');
  return openHttp(parsed, opts.headers ?? {}, policy, follow ? MAX_REDIRECTS : -1, method, opts.body);
}

function bodyLength(body: RequestBody): number {
  return Buffer.isBuffer(body) ? body.length : body.size;
}

/**
 * Extra CA certificates for every TLS connection of this process (`--ca-file`, `SSL_CERT_FILE`: registry/tls.ts),
 * added to Node's bundled roots before the first one. Adding them costs about 20 ms, which a command that makes no
 * TLS connection (a warm `strata run`) does not pay.
 */
const extraCas: { certs: string[]; what: string; added: boolean } = { certs: [], what: '', added: false };

/** Trusts `certs` (PEM) too for TLS from the first connection on; `what` names where they came from, for messages. */
export function trustExtraCas(certs: string[], what: string): void {
  Object.assign(extraCas, { certs, what, added: false });
}

function addExtraCas(): void {
  if (extraCas.added || extraCas.certs.length === 0) return;
  const tls = process.getBuiltinModule('node:tls') as typeof import('node:tls');
  try {
    tls.setDefaultCACertificates([...tls.getCACertificates('default'), ...extraCas.certs]);
  } catch (e) {
    // Not marked added: every later TLS request is refused the same way, none goes out without the CAs asked for.
    throw new StrataError('E_USAGE', `${extraCas.what}: a certificate in it is not valid: ${(e as Error).message}`);
  }
  extraCas.added = true;
}

function openHttp(url: URL, headers: Record<string, string>, policy: RetryPolicy, redirectsLeft: number, method = 'GET', body?: RequestBody): Promise<OpenResponse> {
  if (url.protocol === 'https:') {
    try {
      addExtraCas();
    } catch (e) {
      return Promise.reject(e);
    }
  }
  return new Promise((resolve, reject) => {
    // Loaded when a request is made: an ESM import of node:http builds its whole namespace, undici with it (20 ms).
    const mod = process.getBuiltinModule(url.protocol === 'https:' ? 'node:https' : 'node:http') as typeof import('node:https');
    let connectTimer: NodeJS.Timeout | undefined;
    let response: IncomingMessage | undefined;
    const sendHeaders: Record<string, string> = { 'user-agent': 'strata', 'accept-encoding': 'identity', ...headers };
    if (body !== undefined) sendHeaders['content-length'] = String(bodyLength(body));
    else if (method === 'PUT' || method === 'POST' || method === 'PATCH') sendHeaders['content-length'] = '0';
    const req = mod.request(url, { method, headers: sendHeaders });
    const fail = (e: unknown): void => {
      if (connectTimer) clearTimeout(connectTimer);
      reject(networkError(e, url.toString()));
    };
    req.on('socket', (socket) => {
      if (!socket.connecting) return;
      connectTimer = setTimeout(() => {
        req.destroy(new NetworkError(`${redact(url.toString())}: no connection after ${policy.connectTimeoutMs} ms`, true));
      }, policy.connectTimeoutMs);
      socket.once('connect', () => clearTimeout(connectTimer));
    });
    const abort = (err: NetworkError): void => {
      if (response) response.destroy(err);
      req.destroy(err);
    };
    // The socket's idle timer stays armed while the body is read, so a stalled body fails too.
    req.setTimeout(policy.idleTimeoutMs, () => abort(new NetworkError(`${redact(url.toString())}: nothing received for ${policy.idleTimeoutMs} ms`, true)));
    // A trickle resets the idle timer with every byte: the low-speed check bounds the rate as well.
    req.on('socket', (socket) => {
      const watch = (): void => watchSpeed(socket, policy, abort, url.toString(), req);
      if (socket.connecting) socket.once('connect', watch);
      else watch();
    });
    req.on('error', fail);
    req.on('response', (res) => {
      if (connectTimer) clearTimeout(connectTimer);
      response = res;
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (redirectsLeft >= 0 && status >= 300 && status < 400 && status !== 304 && location) {
        res.destroy();
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          reject(new NetworkError(`${redact(url.toString())}: redirect to an invalid URL`, false));
          return;
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          reject(new NetworkError(`${redact(url.toString())}: redirect to unsupported scheme ${next.protocol}`, false));
        } else if (redirectsLeft <= 0) {
          reject(new NetworkError(`${redact(url.toString())}: too many redirects`, false));
        } else {
          // A redirect to another host must not carry this host's credentials.
          const carried = next.host === url.host ? headers : Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
          openHttp(next, carried, policy, redirectsLeft - 1, method).then(resolve, reject);
        }
        return;
      }
      const h: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(res.headers)) h[k] = Array.isArray(v) ? v.join(', ') : v;
      resolve({ status, headers: h, body: res, url: url.toString() });
    });
    if (body === undefined || bodyLength(body) === 0) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else {
      const start = body.start ?? 0;
      const src = createReadStream(body.file, { start, end: start + body.size - 1, highWaterMark: 1 << 20 });
      src.on('error', (e) => req.destroy(e));
      src.pipe(req);
    }
  });
}

/**
 * Fails the request (through `abort`) when fewer than `policy.lowSpeedLimit` bytes a second arrive on `socket`,
 * averaged over the last `policy.lowSpeedTimeMs`, as curl's --speed-limit/--speed-time do. Counts every byte the
 * socket reads or writes (headers and body, so an upload counts) from the moment it is connected, until the request
 * closes.
 */
function watchSpeed(socket: Socket, policy: RetryPolicy, abort: (e: NetworkError) => void, url: string, req: ClientRequest): void {
  const limit = policy.lowSpeedLimit;
  const windowMs = policy.lowSpeedTimeMs;
  if (!(limit > 0) || !(windowMs > 0) || req.destroyed) return;
  const moved = (): number => socket.bytesRead + socket.bytesWritten;
  const base = moved();
  const t0 = Date.now();
  // (time, bytes read) samples; the oldest one kept is at or before the start of the window.
  const samples: [number, number][] = [[t0, 0]];
  const tick = Math.max(25, Math.min(1000, windowMs / 10));
  const timer = setInterval(() => {
    const now = Date.now();
    const read = moved() - base;
    samples.push([now, read]);
    while (samples.length > 1 && samples[1]![0] <= now - windowMs) samples.shift();
    if (now - t0 < windowMs) return;
    const [since, then] = samples[0]!;
    const got = read - then;
    const seconds = (now - since) / 1000;
    if (got < limit * seconds) {
      clearInterval(timer);
      abort(new NetworkError(`${redact(url)}: slower than ${limit} bytes/s (${got} bytes in the last ${seconds.toFixed(1)} s)`, true));
    }
  }, tick);
  timer.unref();
  req.once('close', () => clearInterval(timer));
}

/** file:// answers like a plain HTTP server: 404 when absent, 403 when unreadable, 206 for a Range. */
async function openFile(url: URL, headers: Record<string, string>): Promise<OpenResponse> {
  const path = fileURLToPath(url);
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
    size = st.size;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const status = code === 'EACCES' || code === 'EPERM' ? 403 : 404;
    return { status, headers: {}, body: emptyStream(), url: url.toString() };
  }
  const range = /^bytes=(\d+)-$/.exec(headers.range ?? '');
  const start = range ? Number(range[1]) : 0;
  if (range && start >= size) return { status: 416, headers: {}, body: emptyStream(), url: url.toString() };
  const body = createReadStream(path, { start, highWaterMark: 1 << 20 });
  const h: Record<string, string | undefined> = { 'content-length': String(size - start) };
  if (range) h['content-range'] = `bytes ${start}-${size - 1}/${size}`;
  return { status: range ? 206 : 200, headers: h, body, url: url.toString() };
}

function emptyStream(): Readable {
  return Readable.from([]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Delay before retry number `n` (1-based), honouring a Retry-After of up to 30 s. */
export function backoffDelay(policy: RetryPolicy, n: number, retryAfter?: string): number {
  const base = policy.backoffMs * 2 ** (n - 1);
  if (retryAfter === undefined) return base;
  let ms = Number(retryAfter) * 1000;
  if (Number.isNaN(ms)) ms = Date.parse(retryAfter) - Date.now();
  if (!Number.isFinite(ms) || ms <= 0) return base;
  return Math.max(base, Math.min(ms, 30_000));
}

export function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 429;
}

/** Joins a base URL and a relative path with exactly one slash. */
export function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

/** Reads a whole body, refusing more than `max` bytes. Rejects with a transient NetworkError if cut short. */
async function readAll(res: OpenResponse, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body) {
      n += (chunk as Buffer).length;
      if (n > max) {
        res.body.destroy();
        throw new NetworkError(`${redact(res.url)}: body larger than ${max} bytes`, false);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    throw networkError(e, res.url);
  }
  const declared = res.headers['content-length'];
  if (declared !== undefined && Number(declared) !== n) {
    throw new NetworkError(`${redact(res.url)}: body ended after ${n} of ${declared} bytes`, true);
  }
  return Buffer.concat(chunks);
}

/**
 * Plain GET of `path` under each base URL in turn, for small unverified things (InRelease, Release.gpg).
 * Resolves `{ ok: false, status }` when no URL served it and at least one answered with a final HTTP
 * status (404 first of all: callers fall back from InRelease to Release + Release.gpg); throws E_FETCH
 * when every URL failed without such an answer (unreachable, 5xx after retries).
 * `retries` is the number of extra attempts per URL; `timeoutMs` is the idle timeout.
 */
export async function httpGet(
  urls: string[],
  path: string,
  opts: { retries?: number; timeoutMs?: number; backoffMs?: number; maxBytes?: number } = {},
): Promise<{ ok: true; body: Buffer; url: string } | { ok: false; status: number }> {
  const policy: RetryPolicy = {
    ...defaultRetryPolicy,
    ...(opts.retries !== undefined && { retries: opts.retries }),
    ...(opts.timeoutMs !== undefined && { idleTimeoutMs: opts.timeoutMs }),
    ...(opts.backoffMs !== undefined && { backoffMs: opts.backoffMs }),
  };
  const maxBytes = opts.maxBytes ?? MAX_UNVERIFIED_BYTES;
  const failures: string[] = [];
  let finalStatus: number | undefined;
  for (const base of urls) {
    const url = joinUrl(base, path);
    const before = failures.length;
    for (let attempt = 0; attempt <= policy.retries; attempt++) {
      let res: OpenResponse;
      try {
        // Connecting and reading the body fail alike: one failure of this attempt.
        res = await openGet(url, {}, policy);
        if (res.status === 200) return { ok: true, body: await readAll(res, maxBytes), url: res.url };
      } catch (e) {
        const err = networkError(e, url);
        failures.push(err.message);
        if (!err.transient) break;
        if (attempt < policy.retries) await sleep(backoffDelay(policy, attempt + 1));
        continue;
      }
      res.body.destroy();
      failures.push(`${redact(url)}: HTTP ${res.status}`);
      if (isTransientStatus(res.status)) {
        if (attempt < policy.retries) await sleep(backoffDelay(policy, attempt + 1, res.headers['retry-after']));
        continue;
      }
      if (finalStatus === undefined || (res.status === 404 && finalStatus !== 404)) finalStatus = res.status;
      break;
    }
    // One line per URL in the final message: its last failure.
    failures.splice(before, failures.length - before - 1);
  }
  if (finalStatus !== undefined) return { ok: false, status: finalStatus };
  throw new StrataError(
    'E_FETCH',
    `could not download ${path}: ${urls.length === 0 ? 'no URL to try' : failures.join('; ')}`,
    'check the network and the mirror URLs',
  );
}
