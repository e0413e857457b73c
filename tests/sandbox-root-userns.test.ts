/**
 * Root without CAP_SYS_ADMIN (root in a container started without it, as strata's own image is) cannot make mount
 * namespaces in its own user namespace: bubblewrap's sandbox then enters a new user namespace as root (uid 0 mapped
 * to itself) and keeps no capability, as a recipe build always does. tests/image.test.ts runs `strata run` so in
 * the container; this checks the arguments and the capability check.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { bwrapArgs } from '../run/sandbox/bwrap.ts';
import { hasSysAdmin } from '../run/sandbox/supervise.ts';

const spec = { rootfs: '/nonexistent-root', argv: ['true'], env: {}, cwd: '/p', binds: [], network: true };
/** The `n` arguments from --unshare-user on. */
const fromUserns = (a: string[], n: number) => a.slice(a.indexOf('--unshare-user'), a.indexOf('--unshare-user') + n);

test('root with CAP_SYS_ADMIN: no user namespace, every capability dropped', (t) => {
  const a = bwrapArgs(spec, false, { uid: 0, gid: 0 });
  t.false(a.includes('--unshare-user'));
  t.deepEqual(a.slice(a.indexOf('--cap-drop'), a.indexOf('--cap-drop') + 2), ['--cap-drop', 'ALL']);
});

test('root without CAP_SYS_ADMIN: a user namespace of its own, as uid 0, every capability dropped', (t) => {
  const a = bwrapArgs(spec, false, { uid: 0, gid: 0 }, true);
  t.deepEqual(fromUserns(a, 7), ['--unshare-user', '--uid', '0', '--gid', '0', '--cap-drop', 'ALL']);
});

test('an ordinary user keeps its own uid in its user namespace, whatever rootUserns says', (t) => {
  for (const rootUserns of [false, true]) {
    const a = bwrapArgs(spec, true, { uid: 1000, gid: 1000 }, rootUserns);
    t.deepEqual(fromUserns(a, 5), ['--unshare-user', '--uid', '1000', '--gid', '1000']);
    t.false(a.includes('--cap-drop'));
  }
});

test('hasSysAdmin reads bit 21 of CapEff', (t) => {
  const eff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`);
  t.is(hasSysAdmin(), ((eff >> 21n) & 1n) === 1n);
});
