/**
 * Registry credentials as the container ecosystem keeps them: Docker's `config.json` (`$DOCKER_CONFIG/config.json`,
 * else `~/.docker/config.json`), its `auths` map from a registry to a base64 `user:password` in `auth` (or
 * `username` and `password`), and the registry's `WWW-Authenticate` challenge: `Basic`, or `Bearer` with the token
 * flow (a GET of the realm with `service` and `scope`, the credentials sent as Basic when there are any). Pure but
 * for reading the config file; the client (client.ts) does the requests. Secrets never leave this module in a
 * message: errors name the registry and the file, never what was in it.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../errors.ts';

export interface Credentials {
  username: string;
  password: string;
}

/** Where Docker keeps its client config. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json');
}

/** A key of `auths` as a bare `host[:port]`: Docker writes `host`, `https://host`, `https://host/v1/`. */
function hostOfKey(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
}

/**
 * The credentials Docker's config holds for `registry` (host[:port]), or undefined when it has none (no file, no
 * entry). A file that is not JSON, or an entry whose `auth` is not base64 `user:password`, is E_USAGE naming the
 * file and the registry.
 */
export function credentialsFor(registry: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const path = dockerConfigPath(env);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  let config: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
  try {
    config = JSON.parse(text) as typeof config;
  } catch {
    throw new StrataError('E_USAGE', `${path} is not valid JSON`, 'fix or remove it (docker login writes it)');
  }
  const want = registry.toLowerCase();
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    if (hostOfKey(key) !== want || typeof entry !== 'object' || entry === null) continue;
    if (typeof entry.auth === 'string' && entry.auth !== '') {
      const plain = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = plain.indexOf(':');
      if (colon <= 0) throw new StrataError('E_USAGE', `the "auth" of ${registry} in ${path} is not base64 of user:password`, `run docker login ${registry} again, or write it with: printf user:password | base64`);
      return { username: plain.slice(0, colon), password: plain.slice(colon + 1) };
    }
    if (typeof entry.username === 'string' && typeof entry.password === 'string') return { username: entry.username, password: entry.password };
  }
  return undefined;
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** The first challenge of a `WWW-Authenticate` header: `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
  for (const p of m[2]!.matchAll(re)) params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

/** The token endpoint's URL for a Bearer challenge and the scope this client needs. */
export function tokenUrl(ch: Challenge, scope: string): string {
  const realm = ch.params.realm;
  if (!realm) throw new StrataError('E_REGISTRY', 'the registry asked for a Bearer token but named no realm to get it from');
  const u = new URL(realm);
  if (ch.params.service) u.searchParams.set('service', ch.params.service);
  u.searchParams.set('scope', scope);
  return u.toString();
}

/** The token of a token endpoint's JSON answer (`token`, or OAuth2's `access_token`). */
export function tokenOf(body: Buffer): string | undefined {
  try {
    const j = JSON.parse(body.toString('utf8')) as { token?: unknown; access_token?: unknown };
    const t = typeof j.token === 'string' && j.token !== '' ? j.token : j.access_token;
    return typeof t === 'string' && t !== '' ? t : undefined;
  } catch {
    return undefined;
  }
}
