/**
 * The installed state's pure parts, against what dpkg and the Essential postinsts write (the real comparison is
 * tests/oracle-debian.test.ts, a long check): the status paragraph in dpkg's field order with Conffiles, the
 * control members kept in info/, and the first-configure files made from a package's own files only when it ships
 * them.
 */
import test from 'ava';
import { dpkgEntries, statusParagraph } from '../realiser/tree.ts';
import { configureOrder, firstConfigureEntries, type ShippedPackage } from '../realiser/firstConfigure.ts';
import { Accounts, parseSysusers, shadowconfigOn, sysusers } from '../realiser/accounts.ts';
import { applyTmpfiles, parseTmpfiles, type TreeNode } from '../realiser/tmpfiles.ts';
import { scriptCalls } from '../realiser/tree.ts';
import type { LayerEntry } from '../realiser/layertar.ts';

test('the status paragraph: dpkg\'s field order, Status and Conffiles, unknown fields last in control order', (t) => {
  const control = [
    'Package: libc6', 'Source: glibc', 'Version: 2.41-12', 'Architecture: amd64', 'Maintainer: GNU Libc Maintainers <x@y>',
    'Installed-Size: 13223', 'Depends: libgcc-s1', 'Replaces: libc6-amd64', 'Section: libs', 'Priority: optional',
    'Multi-Arch: same', 'Homepage: https://example.invalid/libc', 'Description: GNU C Library: Shared libraries', ' Contains the standard libraries.',
    'Important: yes', '',
  ].join('\n');
  t.is(
    statusParagraph(control, { '/etc/ld.so.conf.d/x86_64-linux-gnu.conf': 'd4e7a7b88a71b5ffd9e2644e71a0cfab' }),
    [
      'Package: libc6', 'Status: install ok installed', 'Priority: optional', 'Section: libs', 'Installed-Size: 13223',
      'Maintainer: GNU Libc Maintainers <x@y>', 'Architecture: amd64', 'Multi-Arch: same', 'Source: glibc', 'Version: 2.41-12',
      'Replaces: libc6-amd64', 'Depends: libgcc-s1', 'Conffiles:', ' /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e7a7b88a71b5ffd9e2644e71a0cfab',
      'Description: GNU C Library: Shared libraries', ' Contains the standard libraries.', 'Homepage: https://example.invalid/libc', 'Important: yes', '',
    ].join('\n'),
  );
});

test('dpkg\'s database keeps every control member, scripts executable, and ends each paragraph with a blank line', (t) => {
  const entries = dpkgEntries([
    { name: 'b', arch: 'amd64', control: 'Package: b\nVersion: 1\n', paths: ['usr/bin/b'], conffiles: [], controlMembers: { postinst: '#!/bin/sh\n', shlibs: 'libb 1 b\n', '../evil': 'x' } },
    { name: 'a', arch: 'amd64', multiArch: 'same', control: 'Package: a\nVersion: 1\n', paths: [], conffiles: [] },
  ]);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  t.is(byPath.get('var/lib/dpkg/status')!.content!.toString(), 'Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: install ok installed\nVersion: 1\n\n');
  t.is(byPath.get('var/lib/dpkg/info/b.postinst')!.mode, 0o755);
  t.is(byPath.get('var/lib/dpkg/info/b.shlibs')!.mode, 0o644);
  t.false([...byPath.keys()].some((p) => p.includes('evil')), 'a member name that is not a plain word is not written');
  t.true(byPath.has('var/lib/dpkg/diversions'));
});

function pkg(name: string, files: Record<string, string>, extra: string[] = []): ShippedPackage {
  return { name, paths: new Set([...Object.keys(files), ...extra]), read: (p) => Buffer.from(files[p] ?? '') };
}
const show = (es: LayerEntry[]) => Object.fromEntries(es.map((e) => [e.path, e.type === 'symlink' ? `-> ${e.linkname}` : e.type === 'dir' ? `dir ${e.mode.toString(8)} ${e.gid}` : `${e.content?.toString()} ${e.mode.toString(8)} ${e.gid}`]));

test('first-configure files come from the packages\' own files, and only when they ship them', (t) => {
  const pkgs = new Map([
    ['base-passwd', pkg('base-passwd', { 'usr/share/base-passwd/passwd.master': 'root:*:0:0:root:/root:/bin/bash\n', 'usr/share/base-passwd/group.master': 'root:*:0:\nmail:*:8:\nutmp:*:43:\n' })],
    ['base-files', pkg('base-files', { 'usr/share/base-files/dot.profile': 'P', 'usr/share/base-files/dot.bashrc': 'B', 'usr/share/base-files/profile': 'EP', 'usr/share/base-files/motd': 'M', 'usr/share/base-files/info.dir': 'I', 'etc/dpkg/origins/debian': 'O' })],
    ['debianutils', pkg('debianutils', { 'usr/share/debianutils/shells': '# /etc/shells: valid login shells\n/bin/sh\n' })],
    ['dash', pkg('dash', { 'usr/share/debianutils/shells.d/dash': '/bin/dash\n/usr/bin/dash\n' })],
    ['bash', pkg('bash', { 'usr/share/debianutils/shells.d/bash': '/bin/bash\n/bin/rbash\n' }, ['usr/share/info/bash.info.gz'])],
    ['tzdata', pkg('tzdata', { 'usr/share/zoneinfo/Etc/UTC': '' })],
  ]);
  const got = show(firstConfigureEntries(pkgs, 'amd64'));
  t.is(got['etc/passwd'], 'root:*:0:0:root:/root:/bin/bash\n 644 0');
  t.is(got['var/mail'], 'dir 2775 8', 'var/mail belongs to the mail group of group.master');
  t.is(got['var/log/wtmp'], ' 664 43');
  t.is(got['etc/dpkg/origins/default'], '-> debian');
  t.is(got['var/run'], '-> /run');
  t.is(got['root/.profile'], 'P 644 0');
  t.is(got['root'], 'dir 700 0');
  t.is(got['usr/share/info/dir'], 'I 644 0', 'a package ships info pages, and none ships the dir file');
  t.is(got['etc/shells'], '# /etc/shells: valid login shells\n/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/rbash\n/usr/bin/rbash\n/bin/dash\n/usr/bin/dash\n 644 0', 'update-shells: the template, then shells.d in C order, each with its merged-/usr path');
  t.is(got['var/lib/shells.state'], '/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/rbash\n/usr/bin/rbash\n/bin/dash\n/usr/bin/dash\n 644 0');
  t.is(got['etc/localtime'], '-> /usr/share/zoneinfo/Etc/UTC');

  // Packages of those names that do not ship the files (the test fixture's base-files) are left alone.
  t.deepEqual(firstConfigureEntries(new Map([['base-files', pkg('base-files', { 'etc/issue': 'x' })], ['tzdata', pkg('tzdata', {})]]), 'amd64'), []);
});

test("sysusers: groups first, then users, ids downwards from 999, uid and gid together; shadow made 0000 with SOURCE_DATE_EPOCH's day", (t) => {
  const db = new Accounts('root:*:0:0:root:/root:/bin/bash\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n', 'root:*:0:\nadm:*:4:\nnogroup:*:65534:\n');
  // systemd's postinst: `systemd-sysusers basic.conf systemd-journal.conf systemd-network.conf`
  sysusers(db, [...parseSysusers('g adm 4 -\nu root 0 - /root /bin/bash\nu nobody 65534:65534 - /nonexistent\n'), ...parseSysusers('g systemd-journal - -\n'), ...parseSysusers('u! systemd-network - "systemd Network Management"\n')], 20000);
  // dbus-system-bus-common's, later: `systemd-sysusers dbus.conf`
  sysusers(db, parseSysusers('# comment\nu messagebus - "System Message Bus" /nonexistent\n'), 20000);
  const text = Object.fromEntries(db.files().map((f) => [f.path, `${f.text}${f.mode.toString(8)}`]));
  t.is(text['etc/passwd'], 'root:*:0:0:root:/root:/bin/bash\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\nmessagebus:x:997:997:System Message Bus:/nonexistent:/usr/sbin/nologin\n644');
  t.is(text['etc/group'], 'root:*:0:\nadm:*:4:\nnogroup:*:65534:\nsystemd-journal:x:999:\nsystemd-network:x:998:\nmessagebus:x:997:\n644');
  t.is(text['etc/shadow'], 'systemd-network:!*:20000:::::1:\nmessagebus:!*:20000::::::\n0', 'u! locks the account (expiry 1)');
  t.is(text['etc/gshadow'], 'systemd-journal:!*::\nsystemd-network:!*::\nmessagebus:!*::\n0');
  // a suggested id that is taken is given up; an existing user is left alone
  sysusers(db, parseSysusers('u late 997 -\nu messagebus 5 -\n'), 20000);
  t.is(db.user('late')?.[2], '996');
  t.is(db.user('messagebus')?.[2], '997');
});

test("shadowconfig on: 'x' passwords, shadow and gshadow 0640 root:shadow dated SOURCE_DATE_EPOCH's day", (t) => {
  const db = new Accounts('root:*:0:0:root:/root:/bin/bash\n', 'root:*:0:\nshadow:*:42:\n');
  shadowconfigOn(db, 19000);
  const files = Object.fromEntries(db.files().map((f) => [f.path, f]));
  t.is(files['etc/passwd']!.text, 'root:x:0:0:root:/root:/bin/bash\n');
  t.is(files['etc/shadow']!.text, 'root:*:19000:0:99999:7:::\n');
  t.is(files['etc/gshadow']!.text, 'root:*::\nshadow:*::\n');
  t.deepEqual([files['etc/shadow']!.mode, files['etc/shadow']!.gid], [0o640, 42]);
});

test('tmpfiles --create: directories made or their mode set, links made once, runtime and boot-only lines left out', (t) => {
  const tree = new Map<string, TreeNode>([
    ['/etc', { type: 'dir', mode: 0o755, uid: 0, gid: 0 }],
    ['/etc/credstore', { type: 'dir', mode: 0o755, uid: 0, gid: 0 }],
    ['/var', { type: 'dir', mode: 0o755, uid: 0, gid: 0 }],
    ['/var/lib', { type: 'dir', mode: 0o755, uid: 0, gid: 0 }],
    ['/var/lock', { type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: '/run/lock' }],
    ['/root', { type: 'dir', mode: 0o700, uid: 0, gid: 0 }],
  ]);
  const lines = parseTmpfiles(
    ['d /etc/credstore 0700 root root', 'L+ /etc/mtab - - - - ../proc/self/mounts', 'L /var/lock - - - - ../run/lock', 'd /run/user 0755 root root -', 'f+! /etc/nologin 0644 - - - x',
      'd- /root :0755 root :root -', 'd- /root/.ssh :0700 root :root -', 'd$ /var/lib/systemd/network 0755 net net -', 'z /var/log/journal 2755 root root - -', 'h /var/log/journal - - - - +C', 'd /var/lib/%m 0700'].join('\n'),
  );
  const got = applyTmpfiles(lines, { at: (p) => tree.get(p), put: (p, n) => tree.set(p, n), uidOf: (n) => ({ root: 0, net: 998 })[n], gidOf: (n) => ({ root: 0, net: 998 })[n] });
  t.deepEqual(
    got.map((e) => `${e.path} ${e.type} ${e.mode.toString(8)} ${e.uid}:${e.gid}${e.linkname ? ` -> ${e.linkname}` : ''}`),
    ['etc/credstore dir 700 0:0', 'etc/mtab symlink 777 0:0 -> ../proc/self/mounts', 'root/.ssh dir 700 0:0', 'var/lib/systemd dir 755 0:0', 'var/lib/systemd/network dir 755 998:998'],
  );
});

test('configure order: a package after those it depends on, ties and cycles by name; script calls with their variables expanded', (t) => {
  const p = (name: string, depends: string[] = []): ShippedPackage => ({ name, paths: new Set(), read: () => Buffer.alloc(0), depends });
  t.deepEqual(configureOrder(new Map([['dbus-system-bus-common', p('dbus-system-bus-common', ['systemd'])], ['systemd', p('systemd', ['libc6'])], ['libc6', p('libc6')], ['a', p('a', ['b'])], ['b', p('b', ['a', 'systemd'])]])), ['libc6', 'systemd', 'a', 'b', 'dbus-system-bus-common'], 'a cycle is configured together, after what it depends on');
  const script = 'MESSAGEUSER=messagebus\nLAUNCHER=/usr/lib/dbus-1.0/dbus-daemon-launch-helper\nif command -v systemd-sysusers >/dev/null; then\n  systemd-sysusers ${DPKG_ROOT:+--root="$DPKG_ROOT"} dbus.conf\nfi\nif ! dpkg-statoverride --list "$LAUNCHER" >/dev/null; then\n  dpkg-statoverride --update --add root "$MESSAGEUSER" 4754 "$LAUNCHER"\nfi\n';
  t.deepEqual(scriptCalls(script, 'amd64', 'systemd-sysusers'), [['systemd-sysusers', 'dbus.conf']]);
  t.deepEqual(scriptCalls(script, 'amd64', 'dpkg-statoverride').at(-1), ['dpkg-statoverride', '--update', '--add', 'root', 'messagebus', '4754', '/usr/lib/dbus-1.0/dbus-daemon-launch-helper']);
});

test("the scripts' accounts, overrides and links land in the first-configure files", (t) => {
  const control = (postinst: string) => ({ postinst });
  const pkgs = new Map<string, ShippedPackage>([
    ['base-passwd', pkg('base-passwd', { 'usr/share/base-passwd/passwd.master': 'root:*:0:0:root:/root:/bin/bash\n', 'usr/share/base-passwd/group.master': 'root:*:0:\n' })],
    ['systemd', { ...pkg('systemd', { 'usr/lib/sysusers.d/basic.conf': 'g root 0 -\n' }, ['usr/bin/systemd-sysusers']), control: control('systemd-sysusers ${DPKG_ROOT:+--root="$DPKG_ROOT"} basic.conf\n') }],
    ['dbus-system-bus-common', { ...pkg('dbus-system-bus-common', { 'usr/lib/sysusers.d/dbus.conf': 'u messagebus - "System Message Bus" /nonexistent\n' }), control: control('systemd-sysusers dbus.conf\n'), depends: ['systemd'] }],
    ['dbus-daemon', { ...pkg('dbus-daemon', { 'usr/lib/dbus-1.0/dbus-daemon-launch-helper': 'ELF' }), control: control('dpkg-statoverride --update --add root messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n') }],
    ['fontconfig-config', { ...pkg('fontconfig-config', {}, ['etc/fonts/conf.d/10-sub-pixel-none.conf']), control: control('db_get fontconfig/hinting_style\n'), entry: () => ({ type: 'symlink', mode: 0o777, uid: 0, gid: 0 }) }],
  ]);
  const byPath = new Map(firstConfigureEntries(pkgs, 'amd64', 86400 * 3).map((e) => [e.path, e]));
  t.is(byPath.get('etc/passwd')!.content!.toString(), 'root:*:0:0:root:/root:/bin/bash\nmessagebus:x:999:999:System Message Bus:/nonexistent:/usr/sbin/nologin\n');
  t.is(byPath.get('etc/shadow')!.content!.toString(), 'messagebus:!*:3::::::\n');
  const helper = byPath.get('usr/lib/dbus-1.0/dbus-daemon-launch-helper')!;
  t.deepEqual([helper.mode.toString(8), helper.uid, helper.gid, helper.gname, helper.content!.toString()], ['4754', 0, 999, 'messagebus', 'ELF']);
  t.is(byPath.get('var/lib/dpkg/statoverride')!.content!.toString(), 'root messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n');
  t.deepEqual(
    ['10-hinting-slight.conf', '10-sub-pixel-none.conf', '70-no-bitmaps-except-emoji.conf'].map((n) => byPath.get(`etc/fonts/conf.d/${n}`)?.linkname),
    ['/usr/share/fontconfig/conf.avail/10-hinting-slight.conf', '/usr/share/fontconfig/conf.avail/10-sub-pixel-none.conf', '/usr/share/fontconfig/conf.avail/70-no-bitmaps-except-emoji.conf'],
    "debconf's answers: slight hinting, subpixel as the package's own link says, no bitmaps",
  );
  t.is(byPath.get('usr/local/share/fonts')?.type, 'dir');
});
