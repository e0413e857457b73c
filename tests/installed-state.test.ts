/**
 * The installed state's pure parts, against what dpkg and the Essential postinsts write (the real comparison is
 * tests/oracle-debian.test.ts, a long check): the status paragraph in dpkg's field order with Conffiles, the
 * control members kept in info/, and the first-configure files made from a package's own files only when it ships
 * them.
 */
import test from 'ava';
import { dpkgEntries, statusParagraph } from '../realiser/tree.ts';
import { firstConfigureEntries, type ShippedPackage } from '../realiser/firstConfigure.ts';
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
