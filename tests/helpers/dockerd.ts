/**
 * A private Docker engine for tests: Debian's `dockerd` on its own socket, data root, exec root and
 * pidfile under a fresh temp dir, with no bridge network and no iptables changes, so several can run at
 * once beside each other (and beside a system engine). Containers in it must use network mode `none` or
 * `host`. Needs root. One daemon per test file that asks for it.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { openSync, closeSync, constants as fsConstants } from 'node:fs';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';

const run = promisify(execFile);

export interface Dockerd {
  /** `unix:///...` */
  host: string;
  docker: Dockerode;
  /** The temp dir holding the socket, data root, exec root, pidfile and `dockerd.log`. */
  dir: string;
  stop(): Promise<void>;
}

async function findDockerd(): Promise<string | null> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const d of dirs) {
    if (d === '') continue;
    const candidate = join(d, 'dockerd');
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function logTail(dir: string): Promise<string> {
  try {
    const text = await readFile(join(dir, 'dockerd.log'), 'utf8');
    return text.split('\n').slice(-25).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Mount points at or below `dir`, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts a private dockerd and waits until it answers (up to `timeoutMs`). */
export async function startDockerd(opts: { timeoutMs?: number } = {}): Promise<Dockerd> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const dockerd = await findDockerd();
  if (dockerd === null) {
    throw new Error('dockerd is not installed (Debian package docker.io); the Docker engine tests need it');
  }
  if (process.getuid?.() !== 0) {
    throw new Error('starting a private dockerd needs root');
  }
  // Short: the socket path must stay under the 108-byte limit of unix socket addresses.
  const dir = await mkdtemp('/tmp/dk-');
  const socket = join(dir, 'd.sock');
  await writeFile(join(dir, 'daemon.json'), '{}\n');
  const log = openSync(join(dir, 'dockerd.log'), 'a');
  const child = spawn(
    dockerd,
    [
      '--host', `unix://${socket}`,
      '--data-root', join(dir, 'data'),
      '--exec-root', join(dir, 'x'),
      '--pidfile', join(dir, 'd.pid'),
      '--config-file', join(dir, 'daemon.json'),
      '--bridge', 'none',
      '--iptables=false',
      '--ip-masq=false',
      '--userland-proxy=false',
    ],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const host = `unix://${socket}`;
  const docker = new Dockerode({ socketPath: socket, host: undefined });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited(child);
      clearTimeout(timer);
    }
    for (const point of await mountsUnder(dir)) {
      await run('umount', ['-l', point]).catch(() => {});
    }
    const left = await mountsUnder(dir);
    if (left.length > 0) throw new Error(`mounts left under ${dir}: ${left.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = await logTail(dir);
      await stop();
      throw new Error(`dockerd exited (${child.exitCode ?? child.signalCode}) before answering:\n${tail}`);
    }
    try {
      await (docker as unknown as { ping(o: { abortSignal: AbortSignal }): Promise<unknown> }).ping({
        abortSignal: AbortSignal.timeout(2_000),
      });
      return { host, docker, dir, stop };
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      const tail = await logTail(dir);
      await stop();
      throw new Error(`dockerd did not answer on ${host} within ${timeoutMs} ms:\n${tail}`);
    }
    await sleep(200);
  }
}
