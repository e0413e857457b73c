/**
 * Starting the sandbox and watching over it: the invocation for the chosen method, signal forwarding to the command
 * itself, and its exit status.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readFileSync, readlinkSync } from 'node:fs';
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
  const sbinPath = { PATH: `${hostPath}:/usr/sbin:/sbin` };
  // Root without CAP_SYS_ADMIN (in a container) makes a user namespace of its own to make the others in.
  const rootUserns = !rootless && !hasSysAdmin();
  if (method === 'bwrap') {
    // As root, bwrap passes its bounding set on (--cap-drop ALL empties the others): it starts with an empty one,
    // its own capabilities handed down as inheritable ones (root's execve grants bounding | inheritable).
    const cmd = [...(rootless ? [] : emptyBoundingSet(sbinPath)), which('bwrap') ?? 'bwrap'];
    // A terminal's Ctrl-C reaches bwrap's outer process too, which would die of it and SIGKILL the command before
    // its handler finishes. So, with a terminal, bwrap starts with SIGINT and SIGQUIT ignored, and the image's
    // `env --default-signal` gives the command the default back (when the image has a GNU env that can).
    if (terminal && spec.argv.length > 0 && !spec.argv[0]!.includes('=') && envResetsSignals(spec.rootfs)) {
      const args = bwrapArgs({ ...spec, argv: ['/usr/bin/env', '--default-signal=INT,QUIT', ...spec.argv] }, rootless, { uid, gid }, rootUserns);
      return { file: '/bin/sh', args: ['-c', 'trap "" INT QUIT; exec "$0" "$@"', ...cmd, ...args], env: { PATH: hostPath } };
    }
    return { file: cmd[0]!, args: [...cmd.slice(1), ...bwrapArgs(spec, rootless, { uid, gid }, rootUserns)], env: { PATH: hostPath } };
  }
  let capshBin: string | undefined;
  if (!rootless) {
    // As root the command is started by capsh, which drops every capability after the chroot.
    capshBin = which('capsh', sbinPath);
    if (!capshBin) throw new StrataError('E_RUN', 'as root, the unshare sandbox needs capsh to start the command without capabilities, and capsh is not installed', 'install libcap2-bin (or bubblewrap)');
    if (!inRootExists(spec.rootfs, '/bin/sh')) throw new StrataError('E_RUN', 'as root, the unshare sandbox needs /bin/sh in the environment to enter it, and it has none', 'install bubblewrap, or add a shell (dash) to the environment');
  }
  // The image's top level is read once for both the skeleton and the fallback script.
  const steps = rootSteps(spec.rootfs, mountPointsOf(spec));
  const { stage } = places;
  const skeleton = method === 'unshare' ? ensureSkeleton(places.skeletons, unsharePlan(spec, steps), stage) : undefined;
  const flags = rootless || rootUserns ? ['--user', '--map-root-user'] : [];
  if (!spec.network) flags.push('--net');
  return {
    file: which('unshare') ?? 'unshare',
    args: [...flags, '--mount', '--pid', '--fork', '--kill-child', '--', '/bin/sh', '-c', unshareScript(spec, { stage, rootless, ids: { uid, gid }, ...(skeleton ? { skeleton } : {}), ...(capshBin ? { capshBin } : {}), steps, debug: Boolean(process.env.STRATA_DEBUG) }), 'strata-sandbox', ...spec.argv],
    // The command's environment is exactly the spec's: unshare and chroot pass theirs on.
    env: { ...spec.env } as NodeJS.ProcessEnv,
  };
}

/**
 * Whether this process has CAP_SYS_ADMIN in its effective set (root on a host does; root in a container that was not
 * given it, and every other user, do not). Unreadable status: assumed yes, as strata always did.
 */
export function hasSysAdmin(): boolean {
  try {
    const eff = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return eff === undefined || ((BigInt(`0x${eff}`) >> 21n) & 1n) === 1n;
  } catch {
    return true;
  }
}

/**
 * `setpriv --inh-caps=<ours> -- setpriv --bounding-set=-all --`: a prefix after which root's next program runs with
 * this process's capabilities and an empty bounding set (two steps: setpriv empties the bounding set before it
 * sets inheritable capabilities, which must lie in it). Nothing when setpriv is missing: bwrap's no_new_privs
 * already keeps the command from gaining anything through the bounding set.
 */
function emptyBoundingSet(path: { PATH: string }): string[] {
  const setpriv = which('setpriv', path);
  if (!setpriv) return [];
  let caps: bigint;
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const field = (k: string) => BigInt(`0x${new RegExp(`^${k}:\\s*([0-9a-f]+)`, 'm').exec(status)?.[1] ?? '0'}`);
    caps = field('CapPrm') & field('CapBnd');
  } catch {
    return [];
  }
  const names: string[] = [];
  for (let i = 0n; i < 64n; i++) if ((caps >> i) & 1n) names.push(`+cap_${i}`);
  if (names.length === 0) return [];
  return [setpriv, `--inh-caps=${names.join(',')}`, '--', setpriv, '--bounding-set=-all', '--'];
}

/** Whether `path` exists in the root `rootfs`, following symlinks as they resolve inside it. */
export function inRootExists(rootfs: string, path: string): boolean {
  let parts = path.split('/').filter(Boolean);
  let done: string[] = [];
  for (let hops = 0; parts.length > 0 && hops < 40; ) {
    const name = parts.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      done.pop();
      continue;
    }
    const here = join(rootfs, ...done, name);
    let st;
    try {
      st = lstatSync(here);
    } catch {
      return false;
    }
    if (st.isSymbolicLink()) {
      hops++;
      const target = readlinkSync(here);
      if (target.startsWith('/')) done = [];
      parts = [...target.split('/').filter(Boolean), ...parts];
    } else done.push(name);
  }
  return parts.length === 0;
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
  // The handlers are in place before the sandbox starts: a signal that arrives while strata is between spawning it
  // and listening (a loaded machine can hold it there for milliseconds, long enough for the command to be running)
  // would otherwise end strata itself. One that arrives before the child has a pid is delivered once it has one.
  let child: ReturnType<typeof spawn> | undefined;
  const pending: NodeJS.Signals[] = [];
  const deliver = (sig: NodeJS.Signals) => {
    try {
      // A build gets the signal in its whole process group (every step and its children); a run, the command itself.
      if (io.stdio === 'files' && io.signalGroup) process.kill(-child!.pid!, sig);
      else process.kill(commandPid(child!.pid!), sig);
    } catch {
      // already gone
    }
  };
  const forward = (sig: NodeJS.Signals) => {
    if (terminal && (sig === 'SIGINT' || sig === 'SIGQUIT')) return;
    if (child?.pid === undefined) pending.push(sig);
    else deliver(sig);
  };
  const signals = io.forwardSignals ? FORWARDED : [];
  for (const s of signals) process.on(s, forward);
  const fds = io.stdio === 'files' ? [openSync(io.stdout, 'a'), openSync(io.stderr, 'a')] : [];
  try {
    child = spawn(inv.file, inv.args, {
      stdio: io.stdio === 'files' ? ['ignore', fds[0]!, fds[1]!] : 'inherit',
      env: inv.env,
      detached: !terminal,
      ...(spec.runAs ? { uid: spec.runAs.uid, gid: spec.runAs.gid } : {}),
    });
  } catch (e) {
    for (const s of signals) process.removeListener(s, forward);
    throw e;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
  const started = child;
  if (started.pid !== undefined) for (const sig of pending.splice(0)) deliver(sig);
  try {
    return await new Promise<number>((resolve, reject) => {
      started.once('error', (e) => reject(new StrataError('E_RUN', `cannot start ${inv.file}: ${e.message}`)));
      started.once('exit', (code, signal) => {
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
