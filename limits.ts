/**
 * Every bound strata puts on what it reads and on how long it waits, in one place (the README's "Limits"
 * paragraph says the same). A bound that is hit is reported as an error naming the thing and the limit,
 * never as a hang or an exhausted memory.
 */
import { StrataError } from './errors.ts';

/** Largest strata.toml read: a manifest is a few kilobytes. */
export const MAX_MANIFEST_BYTES = 1 << 20; // 1 MiB
/** Largest OpenPGP keyring read for a channel's signed-by (the whole Debian archive keyring is about 60 KB). */
export const MAX_KEYRING_BYTES = 8 << 20; // 8 MiB
/** Largest strata.lock read (about 500 bytes a package: a 400-package lock is 200 KB). */
export const MAX_LOCK_BYTES = 64 << 20; // 64 MiB
/** Largest body of an unverified download (InRelease, Release, Release.gpg). */
export const MAX_UNVERIFIED_BYTES = 256 << 20; // 256 MiB

/** HTTP: time allowed to establish a connection. */
export const CONNECT_TIMEOUT_MS = 15_000;
/** HTTP: time allowed without any byte arriving (headers or body). */
export const IDLE_TIMEOUT_MS = 30_000;
/**
 * HTTP: the slowest transfer accepted, like curl's --speed-limit / --speed-time: a request (headers and body)
 * that receives fewer than LOW_SPEED_LIMIT bytes per second on average over any LOW_SPEED_TIME_MS window fails
 * as a transient error (retried, then the next mirror). So a mirror that trickles a byte every few seconds is
 * cut off, where the idle timeout alone would wait forever.
 */
export const LOW_SPEED_LIMIT = 1024; // bytes per second
export const LOW_SPEED_TIME_MS = 30_000;
/** HTTP: extra attempts per URL after the first, for transient failures; the first retry waits BACKOFF_MS, doubling. */
export const RETRIES = 3;
export const BACKOFF_MS = 200;
/** HTTP: redirects followed per request. */
export const MAX_REDIRECTS = 5;

/**
 * The low-speed bounds, with the environment's overrides: `STRATA_HTTP_LOW_SPEED_LIMIT` (bytes per second; 0
 * turns the check off) and `STRATA_HTTP_LOW_SPEED_TIME` (seconds, fractions allowed).
 */
export function lowSpeedFromEnv(env: NodeJS.ProcessEnv = process.env): { lowSpeedLimit: number; lowSpeedTimeMs: number } {
  const num = (name: string, fallback: number, scale: number, min: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min) {
      throw new StrataError('E_USAGE', `${name}=${JSON.stringify(raw)} is not a number >= ${min}`, `unset ${name} to use the default`);
    }
    return v * scale;
  };
  return {
    lowSpeedLimit: num('STRATA_HTTP_LOW_SPEED_LIMIT', LOW_SPEED_LIMIT, 1, 0),
    lowSpeedTimeMs: num('STRATA_HTTP_LOW_SPEED_TIME', LOW_SPEED_TIME_MS, 1000, 0.05),
  };
}
