/**
 * A client of one repository in an OCI distribution registry (the distribution spec's `/v2/` API), over
 * store/http.ts's `request` (its timeouts and failure classes). It answers the registry's challenge once (Basic
 * with the credentials of Docker's config, or a Bearer token for the scope it needs) and sends the answer with
 * every later request; retries transient failures (connection errors, 5xx, 429) with backoff, resending the body
 * from the start; and turns a refusal into one E_REGISTRY message naming the registry, the repository and what to
 * check. Plain HTTP only for loopback registries, or with `insecure`.
 */
import { StrataError } from '../errors.ts';
import { backoffDelay, defaultRetryPolicy, isTransientStatus, NetworkError, redact, request, sleep, type OpenResponse, type RequestBody, type RetryPolicy } from '../store/http.ts';
import { isCertificateProblem } from './tls.ts';
import { basicHeader, credentialsFor, parseChallenge, tokenOf, tokenUrl, type Credentials } from './auth.ts';
import type { Reference } from '../realiser/oci/reference.ts';

export interface Answer {
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
  url: string;
}

export interface ClientOptions {
  insecure?: boolean;
  env?: NodeJS.ProcessEnv;
  policy?: RetryPolicy;
}

/** Whether `host[:port]` is a loopback address (plain HTTP is allowed there without --insecure). */
export function isLoopback(registry: string): boolean {
  const host = registry.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const MAX_ERROR_BODY = 64 * 1024;
const MAX_SMALL_BODY = 16 * 1024 * 1024;

async function readBody(res: OpenResponse, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) {
      res.body.destroy();
      break;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** The distribution spec's error codes in a body (`{"errors":[{"code":"NAME_UNKNOWN",...}]}`), for messages. */
export function errorCodes(body: Buffer): string[] {
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown }[] };
    return (j.errors ?? []).map((e) => e.code).filter((c): c is string => typeof c === 'string');
  } catch {
    return [];
  }
}

/** The registry did not answer a request (a connection failure or cut on every try): E_REGISTRY, with the last failure. */
export class RegistryUnreachable extends StrataError {
  /** The last failure, as `URL: cause`. */
  readonly failure: string;
  constructor(registry: string, failure: string, hint: string) {
    super('E_REGISTRY', `cannot reach the registry ${registry}: ${failure}`, hint);
    this.failure = failure;
  }
}

export class RegistryClient {
  readonly ref: Reference;
  readonly registry: string;
  readonly base: string;
  /** `repository:NAME:pull` or `...:pull,push`. */
  readonly scope: string;
  readonly policy: RetryPolicy;
  private readonly env: NodeJS.ProcessEnv;
  private authorization: string | undefined;
  private credentials: Credentials | undefined | null = null;

  constructor(ref: Reference, actions: 'pull' | 'pull,push', o: ClientOptions = {}) {
    if (!ref.registry) {
      throw new StrataError('E_USAGE', `"${ref.repository}" names no registry`, 'write the registry first: host[:port]/name[:tag], e.g. localhost:5000/team/gp-lidar');
    }
    this.ref = ref;
    this.registry = ref.registry;
    const plain = o.insecure === true || isLoopback(ref.registry);
    this.base = `${plain ? 'http' : 'https'}://${ref.registry}`;
    this.scope = `repository:${ref.path}:${actions}`;
    this.policy = o.policy ?? defaultRetryPolicy;
    this.env = o.env ?? process.env;
  }

  /** The URL of a path under `/v2/<name>/`. */
  url(path: string): string {
    return `${this.base}/v2/${this.ref.path}/${path}`;
  }

  /** The headers that authorise a request already answered (for downloads through the store). */
  authHeaders(): Record<string, string> {
    return this.authorization ? { authorization: this.authorization } : {};
  }

  private creds(): Credentials | undefined {
    if (this.credentials === null) this.credentials = credentialsFor(this.registry, this.env);
    return this.credentials;
  }

  /** One request with retries of transient failures; the answer's body is read whole (small answers), or skipped with `discard`. */
  private async attempt(method: string, url: string, headers: Record<string, string>, body: RequestBody | undefined, discard: boolean, once = false): Promise<Answer> {
    let last = '';
    const retries = once ? 0 : this.policy.retries;
    for (let n = 0; n <= retries; n++) {
      if (n > 0) await sleep(backoffDelay(this.policy, n));
      let res: OpenResponse;
      try {
        res = await request(method, url, { headers, ...(body !== undefined ? { body } : {}) }, this.policy);
      } catch (e) {
        const err = e instanceof NetworkError ? e : new NetworkError(`${redact(url)}: ${(e as Error).message}`, true);
        last = err.message;
        if (isCertificateProblem(last)) {
          throw new StrataError('E_REGISTRY', `the registry ${this.registry} presented a TLS certificate strata cannot verify: ${last}`, 'give the CA that signed it with --ca-file FILE (a PEM file) or SSL_CERT_FILE; or check that the address is the registry\'s own name');
        }
        if (!err.transient) break;
        continue;
      }
      let data: Buffer;
      try {
        data = discard && res.status < 300 ? (res.body.resume(), Buffer.alloc(0)) : await readBody(res, res.status < 300 ? MAX_SMALL_BODY : MAX_ERROR_BODY);
      } catch (e) {
        last = `${redact(url)}: ${(e as Error).message}`;
        continue;
      }
      if (isTransientStatus(res.status) && n < retries) {
        last = `${redact(url)}: HTTP ${res.status}`;
        continue;
      }
      return { status: res.status, headers: res.headers, body: data, url: res.url };
    }
    throw new RegistryUnreachable(this.registry, last, `check that the registry is up and that ${this.registry} is its address${this.base.startsWith('https') ? ' (plain HTTP needs --insecure unless the registry is on loopback)' : ''}`);
  }

  /** Answers a 401 challenge: sets `authorization` for this and every later request; false when there is nothing to answer with. */
  private async answer(challenge: string | undefined): Promise<boolean> {
    const ch = parseChallenge(challenge);
    const creds = this.creds();
    if (ch?.scheme === 'basic') {
      if (!creds) return false;
      this.authorization = basicHeader(creds);
      return true;
    }
    if (ch?.scheme === 'bearer') {
      const url = tokenUrl(ch, this.scope);
      const got = await this.attempt('GET', url, creds ? { authorization: basicHeader(creds) } : {}, undefined, false);
      if (got.status === 401 || got.status === 403) throw this.refused(got.status, 'the token service refused the credentials');
      const token = got.status === 200 ? tokenOf(got.body) : undefined;
      if (!token) throw new StrataError('E_REGISTRY', `the token service of ${this.registry} gave no token (HTTP ${got.status})`, 'check the registry\'s token service');
      this.authorization = `Bearer ${token}`;
      return true;
    }
    return false;
  }

  private refused(status: number, why: string): StrataError {
    const has = this.creds() !== undefined;
    return new StrataError(
      'E_REGISTRY',
      `the registry ${this.registry} refused access to ${this.ref.path} (HTTP ${status}): ${why}`,
      has
        ? `check the user and password for ${this.registry} in the Docker config (docker login ${this.registry}), and that the user may ${this.scope.endsWith('push') ? 'push to' : 'pull from'} ${this.ref.path}`
        : `log in first (docker login ${this.registry}, which writes the Docker config, or set DOCKER_CONFIG to a directory holding a config.json with its "auths")`,
    );
  }

  /**
   * Sends a request, answering an authentication challenge once. A 401 or 403 that remains is E_REGISTRY naming the
   * registry and the repository; any other status is the caller's. With `once`, a transient failure is not retried
   * here (a connection cut becomes E_REGISTRY "cannot reach", a 5xx the caller's answer): for requests that must not
   * be sent twice as they are, such as a PATCH of an upload the registry may have taken part of.
   */
  async send(method: string, url: string, o: { headers?: Record<string, string>; body?: RequestBody; discard?: boolean; once?: boolean } = {}): Promise<Answer> {
    const headers = (): Record<string, string> => ({ ...o.headers, ...this.authHeaders() });
    let a = await this.attempt(method, url, headers(), o.body, o.discard === true, o.once === true);
    if (a.status === 401 && (await this.answer(a.headers['www-authenticate']))) {
      a = await this.attempt(method, url, headers(), o.body, o.discard === true, o.once === true);
    }
    if (a.status === 401) throw this.refused(401, this.authorization ? 'the credentials were not accepted' : 'it needs credentials and there are none for it');
    if (a.status === 403) throw this.refused(403, 'the user may not do this');
    return a;
  }

  /** A status the caller did not expect, as one message with the registry's own error codes. */
  unexpected(what: string, a: Answer): StrataError {
    const codes = errorCodes(a.body);
    return new StrataError('E_REGISTRY', `the registry ${this.registry} answered ${what} with HTTP ${a.status}${codes.length ? ` (${codes.join(', ')})` : ''}`);
  }
}
