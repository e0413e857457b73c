/**
 * The docker backend: runs a command in a container made from a loaded image, with stdin, stdout and stderr
 * attached (a TTY for an interactive shell), signals forwarded, the exit status returned and the container
 * removed afterwards.
 *
 * GPU passthrough: when the engine has the NVIDIA runtime (or CDI), a `DeviceRequests` entry asks it for the
 * selected GPUs; otherwise the device nodes are passed with `HostConfig.Devices` (`rwm`) and the driver
 * libraries and nvidia-smi bound read-only, exactly where the sandbox backend puts them, so passthrough works
 * on hosts without nvidia-container-toolkit. A SONAME link is bound as a second view of the file it names.
 */
import type Dockerode from 'dockerode';
import { createWriteStream } from 'node:fs';
import { posix } from 'node:path';
import { StrataError } from '../errors.ts';
import { dockerHostOf, reasonOf } from '../docker/engine.ts';
import { DRIVER_LIB_DIR, type GpuMounts } from './gpu.ts';
import { FORWARDED } from '../util/signals.ts';
import { TERMINAL_IO, type RunIO } from './io.ts';
import type { Bind } from './sandbox/rootSteps.ts';

export interface DockerRunSpec {
  /** Image reference (name:tag or ID). */
  image: string;
  argv: string[];
  /** Added to the image's environment. */
  env: Record<string, string>;
  cwd: string;
  binds: Bind[];
  gpu?: GpuMounts;
  /** `uid:gid`. */
  user: string;
  tty: boolean;
  network: boolean;
}

interface EngineInfo {
  Runtimes?: Record<string, unknown>;
  CDISpecDirs?: string[];
}

/** Whether the engine can hand out NVIDIA GPUs itself (the nvidia runtime is configured). */
export async function engineHasNvidia(docker: Dockerode): Promise<boolean> {
  const info = (await docker.info()) as EngineInfo;
  return Object.keys(info.Runtimes ?? {}).includes('nvidia');
}

/** The container's create options for `spec` (pure except for the engine's capabilities passed in). */
export function containerOptions(spec: DockerRunSpec, nvidiaRuntime: boolean): Dockerode.ContainerCreateOptions {
  const binds = spec.binds.map((b) => `${b.source}:${b.target}${b.writable ? '' : ':ro'}`);
  const hostConfig: Dockerode.HostConfig = {
    Binds: binds,
    NetworkMode: spec.network ? 'host' : 'none',
    // An init (docker-init, i.e. tini) as PID 1 passes signals on and reaps, so the command is never PID 1.
    Init: true,
  };
  if (spec.gpu) {
    if (nvidiaRuntime) {
      const visible = spec.gpu.env.NVIDIA_VISIBLE_DEVICES ?? 'all';
      hostConfig.DeviceRequests = [
        visible === 'all'
          ? { Driver: 'nvidia', Count: -1, Capabilities: [['gpu', 'compute', 'utility']] }
          : { Driver: 'nvidia', DeviceIDs: visible.split(','), Capabilities: [['gpu', 'compute', 'utility']] },
      ];
    } else {
      hostConfig.Devices = spec.gpu.devices.map((d) => ({ PathOnHost: d.hostPath, PathInContainer: d.path, CgroupPermissions: 'rwm' }));
      const byName = new Map(spec.gpu.libraries.map((l) => [l.name, l.hostPath]));
      for (const l of spec.gpu.libraries) binds.push(`${l.hostPath}:${posix.join(DRIVER_LIB_DIR, l.name)}:ro`);
      for (const l of spec.gpu.links) {
        const target = byName.get(l.target);
        if (target) binds.push(`${target}:${posix.join(DRIVER_LIB_DIR, l.name)}:ro`);
      }
      for (const b of spec.gpu.binaries) binds.push(`${b.hostPath}:${b.path}:ro`);
    }
  }
  return {
    Image: spec.image,
    Cmd: spec.argv,
    Entrypoint: [],
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    WorkingDir: spec.cwd,
    User: spec.user,
    Hostname: 'strata',
    Tty: spec.tty,
    OpenStdin: true,
    StdinOnce: true,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: hostConfig,
  };
}


/** Runs the command in a fresh container; resolves with its exit status. The container is always removed. */
export async function runDocker(docker: Dockerode, spec: DockerRunSpec, io: RunIO = TERMINAL_IO): Promise<number> {
  const nvidia = spec.gpu ? await engineHasNvidia(docker) : false;
  let container: Dockerode.Container;
  try {
    container = await docker.createContainer(containerOptions(spec, nvidia));
  } catch (e) {
    throw new StrataError('E_DOCKER', `the Docker engine at ${dockerHostOf(docker)} refused to create the container: ${reasonOf(e)}`);
  }
  const stdin = process.stdin;
  const inherit = io.stdio === 'inherit';
  const raw = inherit && spec.tty && stdin.isTTY;
  const files = io.stdio === 'files' ? [createWriteStream(io.stdout, { flags: 'a' }), createWriteStream(io.stderr, { flags: 'a' })] : [];
  const signals = io.forwardSignals ? FORWARDED : [];
  const forward = (sig: NodeJS.Signals) => {
    container.kill({ signal: sig }).catch(() => {});
  };
  const resize = () => {
    container.resize({ h: process.stdout.rows, w: process.stdout.columns }).catch(() => {});
  };
  let onInput: ((d: Buffer) => void) | undefined;
  let stopHolding: (() => void) | undefined;
  let attached: (NodeJS.ReadWriteStream & { destroy?(): void }) | undefined;
  try {
    // The user's terminal goes raw before anything is attached: whatever the container's terminal writes (the echo
    // of input typed ahead, a shell's first prompt, everything a quick session prints) may arrive while the
    // container is still starting, and must reach the terminal as it is, not cooked again by the host's driver.
    if (raw) stdin.setRawMode(true);
    const stream = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as NodeJS.ReadWriteStream & { end(): void };
    attached = stream;
    const ended = new Promise<void>((resolve) => {
      stream.once('end', () => resolve());
      stream.once('close', () => resolve());
      stream.once('error', () => resolve());
    });
    const [out, err] = files.length > 0 ? files : [process.stdout, process.stderr];
    if (spec.tty) stream.pipe(out!, { end: false });
    else docker.modem.demuxStream(stream as NodeJS.ReadableStream, out!, err!);
    for (const s of signals) process.on(s, forward);
    await container.start();
    if (raw) {
      resize();
      process.stdout.on('resize', resize);
    }
    // Input, typed ahead or not, goes to a started container, as `docker run -i` sends it. On a TTY the end of
    // input must never close the attach stream: the engine then closes the container's output as well, and what
    // the session prints is lost while the shell waits on. A Ctrl-D typed ahead, while the host's terminal was still
    // canonical, is an end-of-input mark in its line buffer, which Linux hands over as a NUL once the terminal is
    // raw: in what was typed ahead (what the first reads find waiting, within 100 ms of the first) it is sent on as
    // the terminal's EOF character, Ctrl-D, as typed. A NUL typed later (Ctrl-Space: readline's set-mark) stays one.
    // The container's terminal has the same race: input that reaches it before the shell has made it raw is cooked
    // there (echoed twice, and a Ctrl-D becomes a NUL the shell then reads as a character). So input is held until
    // the command has printed something (a shell its prompt, once its terminal is raw) and then been quiet for
    // 300 ms, or for two seconds at most after the start, and is then sent as typed.
    if (inherit && spec.tty) {
      let first: number | undefined;
      let held: Uint8Array[] | undefined = [];
      let quiet: NodeJS.Timeout | undefined;
      const release = () => {
        clearTimeout(quiet);
        clearTimeout(cap);
        if (held?.length) stream.write(Buffer.concat(held));
        held = undefined;
      };
      const cap = setTimeout(release, 2000);
      stream.on('data', () => {
        if (!held) return;
        clearTimeout(quiet);
        quiet = setTimeout(release, 300);
      });
      const send = (d: Uint8Array) => (held ? held.push(d) : stream.write(d));
      onInput = (d: Buffer) => {
        first ??= Date.now();
        send(Date.now() - first < 100 ? d.map((b) => (b === 0 ? 4 : b)) : d);
      };
      stdin.on('data', onInput);
      stdin.once('end', () => send(Buffer.from('\x04')));
      stopHolding = () => {
        clearTimeout(quiet);
        clearTimeout(cap);
      };
    } else if (inherit) stdin.pipe(stream as NodeJS.WritableStream);
    else stream.end();
    const result = (await container.wait()) as { StatusCode: number };
    // Output still in flight when the container exits arrives before the stream ends.
    await Promise.race([ended, new Promise((r) => setTimeout(r, 2000))]);
    return result.StatusCode;
  } catch (e) {
    if (e instanceof StrataError) throw e;
    throw new StrataError('E_DOCKER', `running the container in the Docker engine at ${dockerHostOf(docker)} failed: ${reasonOf(e)}`);
  } finally {
    for (const s of signals) process.removeListener(s, forward);
    if (raw) {
      stdin.setRawMode(false);
      process.stdout.removeListener('resize', resize);
    }
    if (onInput) stdin.removeListener('data', onInput);
    stopHolding?.();
    // An attach connection that has not ended within the grace period above must not keep strata running.
    attached?.destroy?.();
    if (inherit) {
      stdin.unpipe();
      stdin.pause();
    }
    await Promise.all(files.map((f) => new Promise((r) => f.end(r))));
    await container.remove({ force: true }).catch(() => {});
  }
}
