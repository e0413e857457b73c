import test from 'ava';
import { createHash } from 'node:crypto';
import { planLayers } from '../realiser/plan.ts';
import { parseAlternatives, chooseAlternatives, inlineHelpers, mergedUsrPath } from '../realiser/tree.ts';
import type { Lockfile, LockedPackage } from '../model.ts';

function lockOf(n: number): Lockfile {
  const packages: LockedPackage[] = [];
  for (let i = 0; i < n; i++) {
    const name = `pkg${String(i).padStart(4, '0')}`;
    packages.push({
      name,
      version: '1.0',
      arch: 'amd64',
      channel: 'stable',
      source: `src${Math.floor(i / 2)}`,
      filename: `pool/${name}.deb`,
      size: 1000 + i,
      sha256: name.padEnd(64, '0'),
      root: false,
      // a chain: everything depends on libc (pkg0000), odd ones on their even sibling
      depends: i === 0 ? [] : i % 2 === 1 ? [`pkg${String(i - 1).padStart(4, '0')}`, 'pkg0000'] : ['pkg0000'],
      closure: '',
    });
  }
  return { version: 1, manifestSha256: '', project: { name: 'x', arch: 'amd64' }, closure: '', channels: [], image: { env: {}, alternatives: {} }, packages, hostProvided: [] };
}

test('at most 96 package layers whatever the size, the most depended-on source lowest', (t) => {
  for (const n of [1, 10, 400, 3000]) {
    const plan = planLayers(lockOf(n));
    t.true(plan.length <= 96, `${n} packages -> ${plan.length} layers`);
    t.is(plan.flatMap((g) => g.packages).length, n);
  }
  t.deepEqual(planLayers(lockOf(400))[0]!.sources[0], 'src0');
});

test('bumping one package changes one layer; adding one moves at most one boundary', (t) => {
  const lock = lockOf(400);
  const key = (l: Lockfile) => planLayers(l).map((g) => g.packages.map((p) => `${p.name}@${p.sha256}`).join(','));
  const before = key(lock);
  const bumped = { ...lock, packages: lock.packages.map((p) => (p.name === 'pkg0123' ? { ...p, sha256: 'f'.repeat(64), version: '2.0' } : p)) };
  const after = key(bumped);
  t.is(after.length, before.length);
  t.is(after.filter((k, i) => k !== before[i]).length, 1);
  const grown = lockOf(401);
  const g = key(grown);
  const unchanged = g.filter((k) => before.includes(k)).length;
  t.true(unchanged >= before.length - 2, `${unchanged} of ${before.length} layers unchanged`);
});

/** A lock of `sources` source packages, two binaries each; every package depends on one of the ten lowest. */
function wideLock(sources: string[], extraDeps: Record<string, string[]> = {}): Lockfile {
  const lock = lockOf(0);
  lock.packages = sources.flatMap((src, i) =>
    ['', '-dev'].map((suffix) => {
      const name = `${src}${suffix}`;
      const base = i < 10 ? [] : [`${sources[i % 10]}`];
      return { ...lockOf(1).packages[0]!, name, source: src, filename: `pool/${name}.deb`, sha256: createHash('sha256').update(name).digest('hex'), size: 100_000 + i, depends: [...base, ...(suffix ? [src] : []), ...(extraDeps[name] ?? [])] };
    }),
  );
  return lock;
}

test('adding ten packages changes only the layers they join, even when one of them sits below everything', (t) => {
  const names = Array.from({ length: 180 }, (_, i) => `lib${createHash('sha256').update(String(i)).digest('hex').slice(0, 8)}`);
  const key = (l: Lockfile) => planLayers(l, 93).map((g) => g.packages.map((p) => p.sha256).join(','));
  const before = key(wideLock(names));
  // Five new sources (ten packages); one of them becomes a dependency of every package, raising every height.
  const added = Array.from({ length: 5 }, (_, i) => `new${createHash('sha256').update(`n${i}`).digest('hex').slice(0, 8)}`);
  const deps = Object.fromEntries(names.map((n) => [n, [added[0]!]]));
  const after = key(wideLock([...names, ...added].sort(), deps));
  const changed = after.filter((k) => !before.includes(k)).length;
  t.true(changed <= added.length, `${changed} of ${after.length} layers changed`);
  // Removing them again gives the first plan's layers back.
  t.deepEqual(new Set(key(wideLock(names))), new Set(before));
});

test('update-alternatives calls are read from real-style postinst scripts', (t) => {
  const script = `#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  update-alternatives --install /usr/lib/x86_64-linux-gnu/libblas.so.3 \\
                      libblas.so.3-x86_64-linux-gnu \\
                      /usr/lib/x86_64-linux-gnu/blas/libblas.so.3 10
fi
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
update-alternatives --install /usr/bin/editor editor /usr/bin/vi.tiny 15 --slave /usr/share/man/man1/editor.1.gz editor.1.gz /usr/share/man/man1/vi.1.gz
update-alternatives --install /usr/lib/$MA/liblapack.so.3 liblapack.so.3-$MA /usr/lib/$MA/lapack/liblapack.so.3 10
update-alternatives --install /usr/bin/x x "$UNKNOWN" 5
`;
  const alts = parseAlternatives(script, 'demo', 'amd64');
  t.deepEqual(alts.map((a) => [a.name, a.link, a.path, a.priority]), [
    ['libblas.so.3-x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu/libblas.so.3', '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3', 10],
    ['editor', '/usr/bin/editor', '/usr/bin/vi.tiny', 15],
    ['liblapack.so.3-x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu/liblapack.so.3', '/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3', 10],
  ]);
  t.deepEqual(alts[1]!.slaves, [{ link: '/usr/share/man/man1/editor.1.gz', name: 'editor.1.gz', path: '/usr/share/man/man1/vi.1.gz' }]);
  const other = { ...alts[0]!, path: '/usr/lib/x86_64-linux-gnu/openblas/libblas.so.3', priority: 100, package: 'openblas' };
  const chosen = chooseAlternatives([alts[0]!, other], () => true, {});
  t.is(chosen[0]!.chosen.path, other.path);
  t.is(chooseAlternatives([alts[0]!, other], (p) => !p.includes('openblas'), {})[0]!.chosen.path, alts[0]!.path);
  t.is(mergedUsrPath('lib64/ld-linux-x86-64.so.2'), 'usr/lib64/ld-linux-x86-64.so.2');
  t.is(mergedUsrPath('library/x'), 'library/x');
});

test("a shipped helper's registrations are the postinst's own, and a registration the script guards with --query is not made twice", (t) => {
  // mariadb-common's postinst, over mysql-common's configure-symlinks helper (trixie)
  const helper = '#!/bin/sh\nset -e\n\ncase "$1" in\n  install)\n    variant="$2"\n    my_cnf_path="$3"\n    update-alternatives --install /etc/mysql/my.cnf my.cnf "$my_cnf_path" 200\n  ;;\n  remove)\n    update-alternatives --remove my.cnf "$3"\n  ;;\nesac\n';
  const postinst = [
    'if [ -f /usr/share/mysql-common/configure-symlinks ]', 'then', '  /usr/share/mysql-common/configure-symlinks install mariadb "/etc/mysql/mariadb.cnf"', 'fi',
    'if ! update-alternatives --query my.cnf | grep --quiet "Value: /etc/mysql/mariadb.cnf"', 'then', '  update-alternatives --install /etc/mysql/my.cnf my.cnf "/etc/mysql/mariadb.cnf" 500 || true', 'fi', '',
  ].join('\n');
  const read = (p: string) => (p === '/usr/share/mysql-common/configure-symlinks' ? helper : undefined);
  t.deepEqual(parseAlternatives(inlineHelpers(postinst, read), 'mariadb-common', 'amd64').map((a) => [a.name, a.path, a.priority]), [['my.cnf', '/etc/mysql/mariadb.cnf', 200]]);
  t.deepEqual(parseAlternatives(inlineHelpers(postinst, () => undefined), 'mariadb-common', 'amd64').map((a) => a.priority), [500], 'without the helper, the guarded registration is made');
});
