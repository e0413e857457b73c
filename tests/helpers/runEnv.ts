/**
 * Helpers for the `strata run` tests: a fake NVIDIA driver tree (what `detectGpu` is pointed at through
 * STRATA_GPU_ROOT), a project on the fixture mirror, and the real CLI run as a child process.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runCli, type CliOptions, type CliResult } from './project.ts';

export const FAKE_DRIVER = '580.159.04';

export interface FakeGpuTree {
  root: string;
  /** True when the nodes are real character devices (mknod worked), false when they are regular files. */
  realNodes: boolean;
}

function node(path: string, major: number, minor: number): boolean {
  mkdirSync(dirname(path), { recursive: true });
  try {
    execFileSync('mknod', ['-m', '0666', path, 'c', String(major), String(minor)], { stdio: 'ignore' });
    return true;
  } catch {
    writeFileSync(path, '');
    return false;
  }
}

function file(path: string, content: string | Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

/**
 * A host root with driver `version`: /proc/driver/nvidia/version, /proc/devices, device nodes for two GPUs,
 * libraries in /usr/local/nvidia/lib64 (real files + SONAME links), libnvidia-cfg in /usr/lib/x86_64-linux-gnu
 * reached through an absolute link, a stale libcuda of another driver, an unrelated library, and nvidia-smi.
 */
export function makeFakeGpuTree(root: string, version = FAKE_DRIVER): FakeGpuTree {
  file(join(root, 'proc/driver/nvidia/version'), `NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  ${version}  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Oct  9 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n`);
  file(join(root, 'proc/devices'), 'Character devices:\n  1 mem\n  5 /dev/tty\n195 nvidia-frontend\n234 nvidia-caps\n509 nvidia-uvm\n\nBlock devices:\n  8 sd\n');
  let realNodes = node(join(root, 'dev/nvidiactl'), 195, 255);
  node(join(root, 'dev/nvidia0'), 195, 0);
  node(join(root, 'dev/nvidia1'), 195, 1);
  node(join(root, 'dev/nvidia-uvm'), 509, 0);
  node(join(root, 'dev/nvidia-uvm-tools'), 509, 1);
  node(join(root, 'dev/nvidia-caps/nvidia-cap1'), 234, 1);
  realNodes = node(join(root, 'dev/nvidia-caps/nvidia-cap2'), 234, 2) && realNodes;
  file(join(root, 'dev/null-not-nvidia'), '');
  const lib64 = join(root, 'usr/local/nvidia/lib64');
  const real = (stem: string) => {
    file(join(lib64, `${stem}.so.${version}`), `fake ${stem} ${version}\n`);
  };
  for (const stem of ['libcuda', 'libnvidia-ml', 'libnvidia-ptxjitcompiler', 'libnvidia-nvvm', 'libnvidia-gpucomp', 'libcudadebugger', 'libnvidia-pkcs11-openssl3', 'libnvidia-allocator']) real(stem);
  symlinkSync(`libcuda.so.${version}`, join(lib64, 'libcuda.so.1'));
  symlinkSync('libcuda.so.1', join(lib64, 'libcuda.so'));
  symlinkSync(`libnvidia-ml.so.${version}`, join(lib64, 'libnvidia-ml.so.1'));
  symlinkSync(`libnvidia-ptxjitcompiler.so.${version}`, join(lib64, 'libnvidia-ptxjitcompiler.so.1'));
  symlinkSync(`libnvidia-nvvm.so.${version}`, join(lib64, 'libnvidia-nvvm.so.4'));
  symlinkSync(`libcudadebugger.so.${version}`, join(lib64, 'libcudadebugger.so.1'));
  symlinkSync(`libnvidia-allocator.so.${version}`, join(lib64, 'libnvidia-allocator.so.1'));
  file(join(lib64, 'libfoo.so.1'), 'not a driver library\n');
  const multiarch = join(root, 'usr/lib/x86_64-linux-gnu');
  file(join(multiarch, `libnvidia-cfg.so.${version}`), `fake libnvidia-cfg ${version}\n`);
  symlinkSync(`/usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.${version}`, join(multiarch, 'libnvidia-cfg.so.1'));
  // A leftover of an older driver in a later directory: libcuda is taken from lib64 only.
  file(join(multiarch, 'libcuda.so.470.82.01'), 'stale libcuda\n');
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'usr/bin/nvidia-smi'));
  return { root, realNodes };
}

/** The real CLI with exactly `opts.env` as its environment (see `runCli` for users and signals). */
export function strata(args: string[], opts: Omit<CliOptions, 'inheritEnv'> & { env: NodeJS.ProcessEnv }): Promise<CliResult> {
  return runCli(args, { ...opts, inheritEnv: false });
}

/** strata.toml for the runnable fixture environment; `gpu` adds `[gpu] driver = "host"` and libcudart12. */
export function runManifest(mirrorUrl: string, keyring: string, opts: { gpu?: boolean; env?: Record<string, string>; hook?: string } = {}): string {
  const lines = [
    '[project]',
    'name = "runtest"',
    '',
    '[channels.stable]',
    `url = "${mirrorUrl}"`,
    'suite = "stable"',
    'components = ["main", "contrib"]',
    `signed-by = "${keyring}"`,
    '',
    '[packages]',
    'busybox-fixture = "*"',
    ...(opts.gpu ? ['libcudart12 = "*"', '', '[gpu]', 'driver = "host"'] : []),
    '',
    '[env]',
    ...Object.entries(opts.env ?? { GREETING: 'hello from strata' }).map(([k, v]) => `${k} = "${v}"`),
  ];
  if (opts.hook) lines.push('', '[shell]', `hook = "${opts.hook}"`);
  return `${lines.join('\n')}\n`;
}
