/**
 * A command inside `strata run` cannot change the store, nor anything a later run sees: the real CLI, for each
 * sandbox method (bubblewrap, unshare, unshare's one-command-per-mount fallback), as root and rootless (a real
 * unprivileged user, through runuser), with the store in its default place under HOME and elsewhere. The command
 * tries every way in it knows (writing the image, remounting it read-write, writing the store through HOME, renaming
 * the directory that holds the store, reaching the host's root through /proc/1/root, /sys and /proc/sys, chroot,
 * mknod, a user namespace of its own) and reports; each must fail, the store's files must be byte for byte what they
 * were, and a second run must see the original image.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { standardMirror, serveMirror, type ServedMirror } from './helpers/mirror.ts';
import { runManifest, strata } from './helpers/runEnv.ts';

const USER = 'strata-rl';
let work: string;
let served: ServedMirror;
let keyring: string;
let uid: number;

/**
 * Each attack as `name: blocked (its last error line)` or `name: WORKED`; $1 is the store as the host names it, $2
 * the image's directory in it. The fixture's busybox sh runs every applet (mount, mv, chroot, unshare...).
 */
const PROBE = String.raw`
S=$1; R=$S/rootfs/$2; P=$(dirname "$S")
try() { name=$1; shift; if out=$( (eval "$*") 2>&1 ); then echo "$name: WORKED"; else echo "$name: blocked ($(echo "$out" | tail -n1))"; fi; }
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status | tr -d '\t' | tr ':' '='
grep -q " /dev rw,[^ ]* - tmpfs strata-dev " /proc/self/mountinfo && echo root=per-mount || echo root=skeleton
echo "below-store=$(awk -v s="$S/" 'index($5, s) == 1' /proc/self/mountinfo | wc -l)"
try write-image 'echo pwned > /etc/hostname'
try create-in-image 'echo pwned > /usr/bin/pwned'
try remount-root 'mount -o remount,rw / && echo pwned > /pwned'
try remount-usr 'mount -o remount,rw /usr && echo pwned > /usr/bin/pwned'
try remount-etc 'mount -o remount,bind,rw /etc && echo pwned > /etc/hostname'
try unmount-etc 'umount /etc'
try write-store "echo pwned > $R/etc/hostname"
try create-in-store "echo pwned > $S/pwned"
try remount-store "mount -o remount,rw $S && echo pwned > $R/etc/hostname"
try unmount-store "umount $S"
try rename-store "mv $S $S.moved"
try rename-store-parent "mv $P $P.moved"
try host-root "echo pwned > /proc/1/root$R/etc/hostname"
try remount-sys 'mount -o remount,rw /sys'
try sys-writable-mount 'grep -E "^([^ ]+ ){4}/sys(/[^ ]*)? rw[, ]" /proc/self/mountinfo'
try cgroup-mkdir 'mkdir /sys/fs/cgroup/strata-probe && rmdir /sys/fs/cgroup/strata-probe'
try write-sysctl 'v=$(cat /proc/sys/vm/swappiness) && echo $v > /proc/sys/vm/swappiness'
try chroot 'chroot / true'
try mknod 'mknod /tmp/strata-disk b 1 0'
try userns-remount "unshare -r -m sh -c 'mount -o remount,rw /usr && echo pwned > /usr/bin/pwned'"
try userns-unmount "unshare -r -m sh -c 'umount -l $S && echo pwned > $R/etc/hostname'"
`;

/** The attacks that must fail whatever the setup (with the store elsewhere, the store paths do not exist inside). */
const ATTACKS = [
  'write-image', 'create-in-image', 'remount-root', 'remount-usr', 'remount-etc', 'unmount-etc', 'write-store', 'create-in-store', 'remount-store', 'unmount-store',
  'rename-store', 'host-root', 'remount-sys', 'sys-writable-mount', 'cgroup-mkdir', 'write-sysctl', 'chroot', 'mknod', 'userns-remount', 'userns-unmount',
];

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-harden-'));
  chmodSync(work, 0o755);
  const m = await standardMirror(join(work, 'mirror'));
  keyring = m.keyring;
  execFileSync('chmod', ['-R', 'a+rX', m.root]);
  served = await serveMirror(m.root);
  try {
    execFileSync('id', ['-u', USER], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['-M', '-s', '/bin/sh', USER]);
  }
  uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
});

test.after.always(async () => {
  await served?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

function dir(path: string, owner?: number): string {
  mkdirSync(path, { recursive: true });
  if (owner !== undefined) chownSync(path, owner, owner);
  return path;
}

/**
 * Every file of the store with its hash, but strata's own bookkeeping of who used what when (`roots/`, the gc roots,
 * and `active/`, the markers of running strata processes): strata itself rewrites those around each run, from outside
 * the sandbox, and they are no more writable from inside than the rest.
 */
function snapshot(root: string): string[] {
  const out: string[] = [];
  // What strata itself writes on the host as it runs (not the command): its GC roots, its live processes, and Node's
  // compile cache of strata's own modules, which grows as later commands load modules the first did not.
  const bookkeeping = new Set([join(root, 'roots'), join(root, 'active'), join(root, 'compile-cache')]);
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (bookkeeping.has(p)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(`${p} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
      else out.push(`${p} ->`);
    }
  };
  walk(root);
  return out.sort();
}

interface Setup {
  name: string;
  /** Rootless: run the CLI as this user. */
  user?: string;
  /** The store given by STRATA_CACHE_DIR; without it, the default under HOME. */
  elsewhere?: boolean;
}

const SETUPS: Setup[] = [
  { name: 'root, store under HOME' },
  { name: 'root, store elsewhere', elsewhere: true },
  { name: 'rootless, store under HOME', user: USER },
  { name: 'rootless, store elsewhere', user: USER, elsewhere: true },
];

for (const method of ['bwrap', 'unshare', 'unshare-compat']) {
  for (const s of SETUPS) {
    test.serial(`${method}, ${s.name}: nothing the command does changes the store or the next run`, async (t) => {
      const owner = s.user ? uid : undefined;
      const base = dir(join(work, method, `${s.user ? 'user' : 'root'}-${s.elsewhere ? 'elsewhere' : 'home'}`), owner);
      const project = dir(join(base, 'project'), owner);
      writeFileSync(join(project, 'strata.toml'), runManifest(served.url, keyring));
      if (owner !== undefined) chownSync(join(project, 'strata.toml'), owner, owner);
      const home = dir(join(base, 'home'), owner);
      const cacheDir = s.elsewhere ? dir(join(base, 'cache'), owner) : undefined;
      const store = cacheDir ?? join(home, '.cache', 'strata');
      const env = { PATH: process.env.PATH!, HOME: home, STRATA_SANDBOX: method, ...(cacheDir ? { STRATA_CACHE_DIR: cacheDir } : {}) };
      const opts = { cwd: project, env, ...(s.user ? { user: s.user } : {}) };

      const first = await strata(['run', '--', 'cat', '/etc/hostname'], opts);
      t.is(first.code, 0, first.stderr);
      t.is(first.stdout, 'strata\n');
      const image = readdirSync(join(store, 'rootfs')).find((e) => !e.startsWith('.'))!;
      const before = snapshot(store);
      t.true(before.some((l) => l.startsWith(join(store, 'rootfs', image, 'etc/hostname'))));

      const r = await strata(['run', '--', 'sh', '-c', PROBE, 'probe', store, image], opts);
      t.is(r.code, 0, r.stderr);
      t.log(`${method}, ${s.name}:\n${r.stdout}`);
      const lines = r.stdout.trim().split('\n');
      const field = (k: string) => lines.find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1);
      t.is(field('CapEff'), '0000000000000000');
      t.is(field('CapPrm'), '0000000000000000');
      if (!s.user || method === 'bwrap') {
        // As root (and with bubblewrap rootless) the bounding set is empty and no_new_privs is set; rootless
        // through unshare the command is an ordinary uid of its own user namespace, where both are moot.
        t.is(field('CapBnd'), '0000000000000000');
        t.is(field('NoNewPrivs'), '1');
      }
      // unshare took its fast path (a read-only bind with the wrong flags would have sent it to the fallback).
      if (method === 'unshare') t.is(field('root'), 'skeleton');
      if (method === 'unshare-compat') t.is(field('root'), 'per-mount');
      // Nothing is mounted below the store inside (the unshare staging directory, under the store, is not copied in).
      t.is(field('below-store'), '0');
      for (const a of ATTACKS) {
        const line = lines.find((l) => l.startsWith(`${a}: `));
        t.regex(line ?? `${a}: missing`, /^[a-z-]+: blocked /, `${method}, ${s.name}: ${a}`);
      }
      if (!s.elsewhere) t.regex(lines.find((l) => l.startsWith('rename-store-parent: ')) ?? '', /blocked .*busy/i);

      // On the host: the same files with the same bytes, at the same place; the next run sees the image as it was.
      t.true(existsSync(join(store, 'rootfs', image)), 'the store is still where strata looks for it');
      t.deepEqual(snapshot(store), before);
      const again = await strata(['run', '--', 'sh', '-c', 'cat /etc/hostname; ls /usr/bin | grep -c pwned'], opts);
      t.is(again.stdout, 'strata\n0\n', again.stderr);
    });
  }
}

test.serial('a project inside the store is refused: the command could write the store through it', async (t) => {
  const cache = dir(join(work, 'nested-cache'));
  const project = dir(join(cache, 'project'));
  writeFileSync(join(project, 'strata.toml'), runManifest(served.url, keyring));
  const r = await strata(['run', '--', 'cat', '/etc/hostname'], { cwd: project, env: { PATH: process.env.PATH!, HOME: join(work, 'nohome'), STRATA_CACHE_DIR: cache, STRATA_SANDBOX: 'bwrap' } });
  t.is(r.code, 1);
  t.regex(r.stderr, /lies in the store/);
  t.is(r.stdout, '');
});

// In a user namespace the nosuid/nodev of the host mount the store lies on are locked: a read-only remount that
// leaves them out is refused, and unshare's fast path would fall back (or, before, the image stayed writable).
test.serial('rootless unshare, the store on a nosuid,nodev filesystem: still the fast path, still read-only', async (t) => {
  const fs = dir(join(work, 'nosuid-fs'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'nosuid,nodev,mode=0755', 'strata-test', fs]);
  t.teardown(() => execFileSync('umount', ['-l', fs]));
  const project = dir(join(fs, 'project'), uid);
  writeFileSync(join(project, 'strata.toml'), runManifest(served.url, keyring));
  const home = dir(join(fs, 'home'), uid);
  const store = join(home, '.cache', 'strata');
  const opts = { cwd: project, env: { PATH: process.env.PATH!, HOME: home, STRATA_SANDBOX: 'unshare' }, user: USER };
  const first = await strata(['run', '--', 'cat', '/etc/hostname'], opts);
  t.is(first.code, 0, first.stderr);
  const image = readdirSync(join(store, 'rootfs')).find((e) => !e.startsWith('.'))!;
  const before = snapshot(store);
  const r = await strata(['run', '--', 'sh', '-c', PROBE, 'probe', store, image], opts);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.true(lines.includes('root=skeleton'), r.stdout);
  for (const a of ATTACKS) t.regex(lines.find((l) => l.startsWith(`${a}: `)) ?? `${a}: missing`, /^[a-z-]+: blocked /);
  const mounts = await strata(['run', '--', 'sh', '-c', `grep -E " (/usr|${store}) " /proc/self/mountinfo | cut -d" " -f5,6`], opts);
  t.is(mounts.stdout, `/usr ro,nosuid,nodev,relatime\n${store} ro,nosuid,nodev,relatime\n`);
  t.deepEqual(snapshot(store), before);
});
