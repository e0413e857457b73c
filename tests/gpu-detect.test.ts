import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isStrataError } from '../errors.ts';
import { checkDriver, detectGpu, gpuMounts, ldconfigLibraryPaths, parseDriverVersion, parseGpuSelection } from '../run/gpu.ts';
import { bwrapArgs } from '../run/sandbox/bwrap.ts';
import { unshareScript, unsharePlan, fstabText } from '../run/sandbox/unshare.ts';
import { containerOptions } from '../run/docker.ts';
import type { Lockfile } from '../model.ts';
import { FAKE_DRIVER, makeFakeGpuTree, type FakeGpuTree } from './helpers/runEnv.ts';

let work: string;
let tree: FakeGpuTree;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-gpu-'));
  tree = makeFakeGpuTree(join(work, 'host'));
});

test.after.always(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const V = FAKE_DRIVER;

test('detects the driver version, device nodes with their majors, libraries, SONAME links and nvidia-smi', (t) => {
  const host = detectGpu({ root: tree.root })!;
  t.truthy(host);
  t.is(host.driverVersion, V);
  const r = tree.root;
  t.deepEqual(host.devices, [
    { hostPath: `${r}/dev/nvidiactl`, path: '/dev/nvidiactl', major: 195 },
    { hostPath: `${r}/dev/nvidia-uvm`, path: '/dev/nvidia-uvm', major: 509 },
    { hostPath: `${r}/dev/nvidia-uvm-tools`, path: '/dev/nvidia-uvm-tools', major: 509 },
    { hostPath: `${r}/dev/nvidia0`, path: '/dev/nvidia0', major: 195, index: 0 },
    { hostPath: `${r}/dev/nvidia1`, path: '/dev/nvidia1', major: 195, index: 1 },
    { hostPath: `${r}/dev/nvidia-caps/nvidia-cap1`, path: '/dev/nvidia-caps/nvidia-cap1', major: 234 },
    { hostPath: `${r}/dev/nvidia-caps/nvidia-cap2`, path: '/dev/nvidia-caps/nvidia-cap2', major: 234 },
  ]);
  const lib64 = `${r}/usr/local/nvidia/lib64`;
  t.deepEqual(
    host.libraries.map((l) => [l.name, l.hostPath]).sort(),
    [
      [`libcuda.so.${V}`, `${lib64}/libcuda.so.${V}`],
      [`libcudadebugger.so.${V}`, `${lib64}/libcudadebugger.so.${V}`],
      [`libnvidia-allocator.so.${V}`, `${lib64}/libnvidia-allocator.so.${V}`],
      [`libnvidia-cfg.so.${V}`, `${r}/usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.${V}`],
      [`libnvidia-gpucomp.so.${V}`, `${lib64}/libnvidia-gpucomp.so.${V}`],
      [`libnvidia-ml.so.${V}`, `${lib64}/libnvidia-ml.so.${V}`],
      [`libnvidia-nvvm.so.${V}`, `${lib64}/libnvidia-nvvm.so.${V}`],
      [`libnvidia-pkcs11-openssl3.so.${V}`, `${lib64}/libnvidia-pkcs11-openssl3.so.${V}`],
      [`libnvidia-ptxjitcompiler.so.${V}`, `${lib64}/libnvidia-ptxjitcompiler.so.${V}`],
    ].sort(),
  );
  t.deepEqual(
    host.links.map((l) => `${l.name} -> ${l.target}`).sort(),
    [
      `libcuda.so -> libcuda.so.${V}`,
      `libcuda.so.1 -> libcuda.so.${V}`,
      `libcudadebugger.so.1 -> libcudadebugger.so.${V}`,
      `libnvidia-allocator.so.1 -> libnvidia-allocator.so.${V}`,
      `libnvidia-cfg.so.1 -> libnvidia-cfg.so.${V}`,
      `libnvidia-ml.so.1 -> libnvidia-ml.so.${V}`,
      `libnvidia-nvvm.so.4 -> libnvidia-nvvm.so.${V}`,
      `libnvidia-ptxjitcompiler.so.1 -> libnvidia-ptxjitcompiler.so.${V}`,
    ].sort(),
  );
  t.false(host.libraries.some((l) => l.name.includes('470') || l.name.startsWith('libfoo')));
  t.is(host.nvidiaSmi, `${r}/usr/bin/nvidia-smi`);
});

test('no /proc/driver/nvidia/version means no driver', (t) => {
  t.is(detectGpu({ root: join(work, 'nothing-here') }), undefined);
});

test('the loader cache is searched before the known directories', (t) => {
  const ld = [
    '\t1234 libs found in cache `/etc/ld.so.cache\'',
    `\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1`,
    `\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1`,
    `\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6`,
  ].join('\n');
  t.deepEqual(ldconfigLibraryPaths(ld), ['/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1', '/usr/lib/i386-linux-gnu/libcuda.so.1']);
});

test('driver version from both kernel module flavours', (t) => {
  t.is(parseDriverVersion('NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n'), '535.183.01');
  t.is(parseDriverVersion('NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n'), '580.159.04');
});

test('--gpus selects GPUs like NVIDIA_VISIBLE_DEVICES and refuses an absent one', (t) => {
  const host = detectGpu({ root: tree.root })!;
  const one = gpuMounts(host, parseGpuSelection('1') as number[]);
  t.deepEqual(one.devices.map((d) => d.path), ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools', '/dev/nvidia1', '/dev/nvidia-caps/nvidia-cap1', '/dev/nvidia-caps/nvidia-cap2']);
  t.deepEqual(one.env, { NVIDIA_VISIBLE_DEVICES: '1', NVIDIA_DRIVER_CAPABILITIES: 'compute,utility', LD_LIBRARY_PATH: '/run/opengl-driver/lib' });
  t.deepEqual(one.binaries, [{ hostPath: `${tree.root}/usr/bin/nvidia-smi`, path: '/run/opengl-driver/bin/nvidia-smi' }]);
  t.is(gpuMounts(host, 'all').env.NVIDIA_VISIBLE_DEVICES, 'all');
  t.is(parseGpuSelection('none'), 'none');
  const e = t.throws(() => gpuMounts(host, [0, 3]));
  t.true(isStrataError(e) && e.code === 'E_GPU' && /GPU 3/.test(e.message));
  t.throws(() => parseGpuSelection('GPU-1234'), { message: /--gpus/ });
});

function lockWith(packages: { name: string; version: string }[], hostProvided: { name: string; requires: string }[] = []): Lockfile {
  return {
    version: 1,
    manifestSha256: '0'.repeat(64),
    project: { name: 'x', arch: 'amd64' },
    closure: `sha256:${'0'.repeat(64)}`,
    channels: [],
    image: { env: {}, alternatives: {}, gpuDriver: 'host' },
    packages: packages.map((p) => ({ ...p, arch: 'amd64', channel: 'c', source: p.name, filename: '', size: 0, sha256: '', root: true, depends: [], closure: '' })),
    hostProvided,
  };
}

test('refuses a driver too old for the CUDA runtime, naming both versions in one message', (t) => {
  const cuda13 = lockWith([{ name: 'libcudart13', version: '13.0.48-1' }]);
  const e = t.throws(() => checkDriver(cuda13, '575.51.03'));
  t.true(isStrataError(e) && e.code === 'E_GPU');
  t.regex(e!.message, /CUDA 13 runtime \(libcudart13 13\.0\.48-1\) needs NVIDIA driver >= 580, but the host driver is 575\.51\.03/);
  t.notThrows(() => checkDriver(cuda13, V));
  const cuda12 = lockWith([{ name: 'libcudart12', version: '12.4.127-1' }]);
  t.throws(() => checkDriver(cuda12, '520.61.05'), { message: /needs NVIDIA driver >= 525, but the host driver is 520\.61\.05/ });
  t.notThrows(() => checkDriver(cuda12, '525.60.13'));
});

test("the lock's host-provided requirements are checked too", (t) => {
  const lock = lockWith([{ name: 'libcudart12', version: '12.4.127-1' }], [{ name: 'libcuda1', requires: '>= 550' }]);
  t.throws(() => checkDriver(lock, '535.183.01'), { message: /host-provided libcuda1 >= 550, but the host driver is 535\.183\.01/ });
  t.notThrows(() => checkDriver(lock, '550.54.14'));
});

test('both backends put the nodes and files at the same paths inside', (t) => {
  const host = detectGpu({ root: tree.root })!;
  const gpu = gpuMounts(host, [0]);
  const rootfs = join(work, 'emptyroot');
  const spec = { rootfs, argv: ['true'], env: { A: '1' }, cwd: '/p', binds: [{ source: '/p', target: '/p', writable: true }], gpu, network: true };
  const args = bwrapArgs(spec, false, { uid: 0, gid: 0 });
  const triples = (flag: string) => {
    const out: string[] = [];
    args.forEach((a, i) => {
      if (a === flag) out.push(`${args[i + 1]} ${args[i + 2]}`);
    });
    return out;
  };
  const r = tree.root;
  t.deepEqual(triples('--dev-bind'), [
    `${r}/dev/nvidiactl /dev/nvidiactl`,
    `${r}/dev/nvidia-uvm /dev/nvidia-uvm`,
    `${r}/dev/nvidia-uvm-tools /dev/nvidia-uvm-tools`,
    `${r}/dev/nvidia0 /dev/nvidia0`,
    `${r}/dev/nvidia-caps/nvidia-cap1 /dev/nvidia-caps/nvidia-cap1`,
    `${r}/dev/nvidia-caps/nvidia-cap2 /dev/nvidia-caps/nvidia-cap2`,
  ]);
  t.true(triples('--ro-bind').includes(`${r}/usr/local/nvidia/lib64/libcuda.so.${V} /run/opengl-driver/lib/libcuda.so.${V}`));
  t.true(triples('--ro-bind').includes(`${r}/usr/bin/nvidia-smi /run/opengl-driver/bin/nvidia-smi`));
  t.true(triples('--symlink').includes(`libcuda.so.${V} /run/opengl-driver/lib/libcuda.so.1`));
  t.true(triples('--setenv').includes('A 1'));
  // unshare, fast path: a skeleton copied in one go and one fstab; the same nodes, files and links.
  // With an empty host mount table: no nosuid/nodev to carry, whatever this host's /tmp is mounted with.
  const plan = unsharePlan(spec, undefined, []);
  const fstab = fstabText(plan.mounts, '/st age').split('\n');
  t.true(fstab.includes(`${r}/dev/nvidia0 /st\\040age/dev/nvidia0 none bind 0 0`), fstab.join('\n'));
  t.true(fstab.includes(`${r}/usr/local/nvidia/lib64/libcuda.so.${V} /st\\040age/run/opengl-driver/lib/libcuda.so.${V} none bind,ro 0 0`));
  t.is(fstab.at(-2), '/st\\040age/run/opengl-driver /st\\040age/run/opengl-driver none rbind,ro 0 0');
  t.false(fstab.some((l) => l.includes('nvidia1')));
  t.true(plan.skeleton.some((e) => e.kind === 'symlink' && e.path === '/run/opengl-driver/lib/libcuda.so.1' && e.target === `libcuda.so.${V}`));
  t.true(plan.skeleton.some((e) => e.kind === 'file' && e.path === '/dev/nvidia0'));
  // unshare, the one-command-per-mount fallback.
  const script = unshareScript(spec, { stage: '/stage', rootless: false, ids: { uid: 0, gid: 0 }, hostTable: [] });
  t.true(script.includes(`mount --bind '${r}/dev/nvidia0' '/stage/dev/nvidia0'`));
  t.false(script.includes('nvidia1'));
  t.true(script.includes(`ln -s 'libcuda.so.${V}' '/stage/run/opengl-driver/lib/libcuda.so.1'`));

  const docker = containerOptions({ image: 'x', argv: ['true'], env: {}, cwd: '/p', binds: spec.binds, gpu, user: '0:0', tty: false, network: true }, false);
  t.deepEqual(
    (docker.HostConfig!.Devices as { PathOnHost: string; PathInContainer: string; CgroupPermissions: string }[]).map((d) => `${d.PathOnHost} ${d.PathInContainer} ${d.CgroupPermissions}`),
    triples('--dev-bind').map((s) => `${s} rwm`),
  );
  const binds = docker.HostConfig!.Binds!;
  t.true(binds.includes(`${r}/usr/local/nvidia/lib64/libcuda.so.${V}:/run/opengl-driver/lib/libcuda.so.${V}:ro`));
  t.true(binds.includes(`${r}/usr/local/nvidia/lib64/libcuda.so.${V}:/run/opengl-driver/lib/libcuda.so.1:ro`));
  t.true(binds.includes(`${r}/usr/bin/nvidia-smi:/run/opengl-driver/bin/nvidia-smi:ro`));
  t.is(docker.HostConfig!.DeviceRequests, undefined);
  const withRuntime = containerOptions({ image: 'x', argv: ['true'], env: {}, cwd: '/p', binds: spec.binds, gpu, user: '0:0', tty: false, network: true }, true);
  t.deepEqual(withRuntime.HostConfig!.DeviceRequests, [{ Driver: 'nvidia', DeviceIDs: ['0'], Capabilities: [['gpu', 'compute', 'utility']] }]);
  t.is(withRuntime.HostConfig!.Devices, undefined);
});
