/**
 * The Docker engine client: a dockerode client for DOCKER_HOST (`unix:///path`, `tcp://host:port`) or the default
 * local socket, a ping, and the engine's errors turned into E_DOCKER messages. Low: both the realiser (loading an
 * image) and the run backend (running a container) use it.
 */
import Dockerode from 'dockerode';
import { StrataError } from '../errors.ts';

export const PING_TIMEOUT_MS = 10_000;

export const DEFAULT_SOCKET = '/var/run/docker.sock';

/** dockerode's `ping` and `version` take an abort signal that its typings leave out. */
export interface WithAbort {
  ping(opts: { abortSignal: AbortSignal }): Promise<unknown>;
  version(opts: { abortSignal: AbortSignal }): Promise<{ Version?: string; ApiVersion?: string }>;
}

/** A Docker client for `host`: `unix:///path`, a bare absolute socket path, or `tcp://host:port`. */
export function dockerAt(host: string): Dockerode {
  if (host.startsWith('unix://')) return client(host, { socketPath: host.slice('unix://'.length) || DEFAULT_SOCKET });
  if (host.startsWith('/')) return client(host, { socketPath: host });
  const withScheme = host.includes('://') ? host : `tcp://${host}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new StrataError('E_DOCKER', `cannot parse Docker host ${host}`, 'set DOCKER_HOST to unix:///path/to/docker.sock or tcp://host:port');
  }
  if (url.protocol !== 'tcp:' && url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new StrataError('E_DOCKER', `unsupported Docker host ${host}`, 'set DOCKER_HOST to unix:///path/to/docker.sock or tcp://host:port');
  }
  const protocol = url.protocol === 'https:' || url.port === '2376' ? 'https' : 'http';
  return client(host, { host: url.hostname, port: url.port || (protocol === 'https' ? 2376 : 2375), protocol });
}

/**
 * docker-modem merges DOCKER_HOST's settings under the options given (and throws on a DOCKER_HOST it
 * cannot parse), so every field that decides the transport is set explicitly here.
 */
function client(host: string, opts: { socketPath: string } | { host: string; port: string | number; protocol: 'http' | 'https' }): Dockerode {
  const full = 'socketPath' in opts ? { ...opts, host: undefined, port: undefined, protocol: 'http' as const } : opts;
  try {
    return new Dockerode(full);
  } catch (e) {
    throw new StrataError('E_DOCKER', `cannot use Docker host ${host}: ${reasonOf(e)}`, 'set DOCKER_HOST to unix:///path/to/docker.sock or tcp://host:port');
  }
}

/** A Docker client for DOCKER_HOST, or the default local socket when it is unset. */
export function dockerFromEnv(env: NodeJS.ProcessEnv = process.env): Dockerode {
  const host = env.DOCKER_HOST;
  if (host === undefined || host === '') return dockerAt(`unix://${DEFAULT_SOCKET}`);
  return dockerAt(host);
}

/** How a client addresses its engine, for messages: `unix:///path` or `tcp://host:port`. */
export function dockerHostOf(docker: Dockerode): string {
  const modem = docker.modem as { socketPath?: unknown; host?: string; port?: string | number; protocol?: string };
  if (modem.host) return `${modem.protocol === 'https' ? 'https' : 'tcp'}://${modem.host}:${modem.port ?? ''}`;
  return typeof modem.socketPath === 'string' ? `unix://${modem.socketPath}` : `unix://${DEFAULT_SOCKET}`;
}

/** Whether the engine answers `/_ping` within a few seconds. */
export async function pingDocker(docker: Dockerode): Promise<boolean> {
  try {
    await (docker as unknown as WithAbort).ping({ abortSignal: AbortSignal.timeout(PING_TIMEOUT_MS) });
    return true;
  } catch {
    return false;
  }
}

export interface HttpError {
  statusCode?: number;
  json?: { message?: string } | null;
  message?: string;
}

export function isNotFound(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as HttpError).statusCode === 404;
}

export function reasonOf(e: unknown): string {
  if (typeof e === 'object' && e !== null) {
    const err = e as HttpError & { code?: string };
    if (err.json?.message) return err.json.message;
    if (err.code && err.message) return err.message;
    if (err.message) return err.message;
  }
  return String(e);
}

export function unreachable(docker: Dockerode, e: unknown): StrataError {
  return new StrataError(
    'E_DOCKER',
    `cannot reach the Docker engine at ${dockerHostOf(docker)}: ${reasonOf(e)}`,
    'start dockerd (e.g. `systemctl start docker`), or point DOCKER_HOST at a running engine (unix:///path/to/docker.sock or tcp://host:port)',
  );
}

export function refused(docker: Dockerode, what: string, e: unknown): StrataError {
  return new StrataError('E_DOCKER', `the Docker engine at ${dockerHostOf(docker)} refused to ${what}: ${reasonOf(e)}`);
}
