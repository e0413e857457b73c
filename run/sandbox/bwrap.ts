/** The bubblewrap method: one `bwrap` invocation that assembles the root from its arguments. */
import { posix } from 'node:path';
import { DRIVER_LIB_DIR } from '../gpu.ts';
import { mountPointsOf, PROC_READONLY, rootSteps, type SandboxSpec } from './rootSteps.ts';

/**
 * bubblewrap's argument list for `spec` (the program is `bwrap`). As root the command keeps no capability
 * (`--cap-drop ALL`; bwrap sets no_new_privs itself); rootless it has none to begin with. A bind is always recursive
 * here (bwrap has no other kind), which for the store's read-only bind is the same: nothing is mounted below it.
 * `rootUserns`: root without CAP_SYS_ADMIN (root in a container) cannot make mount namespaces in its own user
 * namespace, so it enters a new one too, as root (uid 0 mapped to itself), as builds always do.
 */
export function bwrapArgs(spec: SandboxSpec, rootless: boolean, ids: { uid: number; gid: number }, rootUserns = false): string[] {
  const a: string[] = ['--die-with-parent', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--hostname', 'strata'];
  if (spec.build || (rootUserns && !rootless)) a.push('--unshare-user', '--uid', '0', '--gid', '0', '--cap-drop', 'ALL');
  else if (rootless) a.push('--unshare-user', '--uid', String(ids.uid), '--gid', String(ids.gid));
  else a.push('--cap-drop', 'ALL');
  if (!spec.network) a.push('--unshare-net');
  for (const s of rootSteps(spec.rootfs, mountPointsOf(spec))) {
    if (s.op === 'dir') a.push('--dir', s.path);
    else if (s.op === 'symlink') a.push('--symlink', s.target, s.path);
    else a.push('--ro-bind', s.source, s.path);
  }
  a.push('--dev', '/dev', '--proc', '/proc');
  for (const p of PROC_READONLY) a.push('--ro-bind-try', `/proc/${p}`, `/proc/${p}`);
  a.push('--ro-bind', '/sys', '/sys', '--tmpfs', '/tmp', '--chmod', '1777', '/tmp');
  for (const b of spec.binds) a.push(b.writable ? '--bind' : '--ro-bind', b.source, b.target);
  if (spec.gpu) {
    for (const d of spec.gpu.devices) a.push('--dev-bind', d.hostPath, d.path);
    a.push('--tmpfs', posix.dirname(DRIVER_LIB_DIR), '--dir', DRIVER_LIB_DIR);
    for (const l of spec.gpu.libraries) a.push('--ro-bind', l.hostPath, posix.join(DRIVER_LIB_DIR, l.name));
    for (const l of spec.gpu.links) a.push('--symlink', l.target, posix.join(DRIVER_LIB_DIR, l.name));
    for (const b of spec.gpu.binaries) a.push('--ro-bind', b.hostPath, b.path);
    a.push('--remount-ro', posix.dirname(DRIVER_LIB_DIR));
  }
  if (spec.build) a.push('--remount-ro', '/');
  a.push('--chdir', spec.cwd, '--clearenv');
  for (const [k, v] of Object.entries(spec.env)) a.push('--setenv', k, v);
  a.push('--', ...spec.argv);
  return a;
}
