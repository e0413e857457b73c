/**
 * Starting the sandbox and watching over it: the invocation for the chosen method, signal forwarding to the command
 * itself, and its exit status.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { constants as osConstants } from 'node:os';
import { StrataError } from '../../errors.ts';
import { FORWARDED } from '../../util/signals.ts';
import { TERMINAL_IO, type RunIO } from '../io.ts';
import { which, type SandboxMethod } from './choose.ts';
import { bwrapArgs } from './bwrap.ts';
import { mountPointsOf, rootSteps, type SandboxSpec } from './rootSteps.ts';
import { ensureSkeleton, unsharePlan, unshareScript, type SandboxPlaces } from './unshare.ts';

/** The program, arguments and environment that enter the sandbox. */
export function sandboxInvocation(spec: SandboxSpec, method: SandboxMethod, places: SandboxPlaces, terminal = false): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const uid = spec.runAs?.uid ?? process.getuid?.() ?? 0;
  const gid = spec.runAs?.gid ?? process.getgid?.() ?? 0;
  const rootless = uid !== 0;
  const hostPath = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
  if (method === 'bwrap') {
    const bwrap = which('bwrap') ?? 'bwrap';
    // A terminal's Ctrl-C reaches bwrap's outer process too, which would die of it and SIGKILL the command before
    // its handler finishes. So, with a terminal, bwrap starts with SIGINT and SIGQUIT ignored, and the image's
    // `env --default-signal` gives the command the default back (when the image has a GNU env that can).
    if (terminal && spec.argv.length > 0 && !spec.argv[0]!.includes('=') && envResetsSignals(spec.rootfs)) {
      const args = bwrapArgs({ ...spec, argv: ['/usr/bin/env', '--default-signal=INT,QUIT', ...spec.argv] }, rootless, { uid, gid });
      return { file: '/bin/sh', args: ['-c', 'trap "" INT QUIT; exec "$0" "$@"', bwrap, ...args], env: { PATH: hostPath } };
    }
    return { file: bwrap, args: bwrapArgs(spec, rootless, { uid, gid }), env: { PATH: hostPath } };
  }
  // The image's top level is read once for both the skeleton and the fallback script.
  const steps = rootSteps(spec.rootfs, mountPointsOf(spec));
  const { stage } = places;
  const skeleton = method === 'unshare' ? ensureSkeleton(places.skeletons, unsharePlan(spec, steps), stage) : undefined;
  const flags = rootless ? ['--user', '--map-root-user'] : [];
  if (!spec.network) flags.push('--net');
  return {
    file: which('unshare') ?? 'unshare',
    args: [...flags, '--mount', '--pid', '--fork', '--kill-child', '--', '/bin/sh', '-c', unshareScript(spec, { stage, rootless, ids: { uid, gid }, ...(skeleton ? { skeleton } : {}), steps, debug: Boolean(process.env.STRATA_DEBUG) }), 'strata-sandbox', ...spec.argv],
    // The command's environment is exactly the spec's: unshare and chroot pass theirs on.
    env: { ...spec.env } as NodeJS.ProcessEnv,
  };
}

/** Whether the image's /usr/bin/env is GNU env with --default-signal (coreutils >= 8.31). */
function envResetsSignals(rootfs: string): boolean {
  try {
    return readFileSync(join(rootfs, 'usr/bin/env')).includes('default-signal');
  } catch {
    return false;
  }
}


/** Child pids of `pid` (from /proc), or none. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * The command's pid on the host: the grandchild of the sandbox process (bwrap -> its PID 1 -> the command;
 * unshare -> the namespace's PID 1, a shell -> the command); the sandbox process while it is not there yet.
 */
export function commandPid(sandboxPid: number): number {
  const [init] = childrenOf(sandboxPid);
  if (init === undefined) return sandboxPid;
  const [command] = childrenOf(init);
  return command ?? sandboxPid;
}

/**
 * Runs the command in the sandbox with stdin, stdout and stderr passed through (or, with `io.stdio` 'files', stdin
 * from /dev/null and the outputs appended to the two files); resolves with its exit status (128 + signal number
 * when a signal ended it).
 *
 * Signals: strata sends what it receives to the command itself, not to bwrap or unshare (bwrap's outer process
 * would die of it and take the command down unannounced; unshare's ignores SIGINT and SIGTERM). A terminal's
 * Ctrl-C (SIGINT, SIGQUIT with a TTY on stdin) already reaches the whole foreground process group, the command
 * included, so it is not sent twice. Without a terminal the sandbox runs in its own process group, so a signal
 * to strata's process group reaches the command once, through strata.
 */
export async function runSandbox(spec: SandboxSpec, method: SandboxMethod, places: SandboxPlaces, io: RunIO = TERMINAL_IO): Promise<number> {
  if (method !== 'bwrap' && !existsSync(places.stage)) throw new StrataError('E_RUN', `the sandbox staging directory ${places.stage} is missing`);
  const terminal = io.stdio === 'inherit' && Boolean(process.stdin.isTTY);
  const inv = sandboxInvocation(spec, method, places, terminal);
  const fds = io.stdio === 'files' ? [openSync(io.stdout, 'a'), openSync(io.stderr, 'a')] : [];
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(inv.file, inv.args, {
      stdio: io.stdio === 'files' ? ['ignore', fds[0]!, fds[1]!] : 'inherit',
      env: inv.env,
      detached: !terminal,
      ...(spec.runAs ? { uid: spec.runAs.uid, gid: spec.runAs.gid } : {}),
    });
  } finally {
    for (const fd of fds) closeSync(fd);
  }
  const forward = (sig: NodeJS.Signals) => {
    if (terminal && (sig === 'SIGINT' || sig === 'SIGQUIT')) return;
    if (child.pid === undefined) return;
    try {
      if (io.stdio === 'files' && io.signalGroup) process.kill(-child.pid, sig);
      else process.kill(commandPid(child.pid), sig);
    } catch {
      // already gone
    }
  };
  const signals = io.forwardSignals ? FORWARDED : [];
  for (const s of signals) process.on(s, forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new StrataError('E_RUN', `cannot start ${inv.file}: ${e.message}`)));
      child.once('exit', (code, signal) => {
        if (signal) resolve(128 + (osSignal(signal) ?? 1));
        else resolve(code ?? 1);
      });
    });
  } finally {
    for (const s of signals) process.removeListener(s, forward);
  }
}

function osSignal(sig: NodeJS.Signals): number | undefined {
  return (osConstants.signals as Record<string, number>)[sig];
}
