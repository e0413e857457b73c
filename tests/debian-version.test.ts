/**
 * compareVersions against the real `dpkg --compare-versions` on thousands of real version pairs (from
 * the dpkg status file and apt's Packages indexes) plus hand-written edge cases; parseVersion and
 * isValidVersion against `dpkg --validate-version`.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { compareVersions, formatVersion, isValidVersion, parseVersion } from '../debian/version.ts';
import { aptPackagesIndexes, dpkgStatusText } from './helpers/aptIndexes.ts';

const hasDpkg = spawnSync('dpkg', ['--version']).status === 0;

/** Edge cases: every unordered pair of these is checked against dpkg. */
const NASTY = [
  '0', '00', '0.0', '0:0', '00:0', '0:0-0', '1', '1.0', '1.0-0', '1.0-00', '1.0-0.0', '1.0-1', '1.0-01',
  '1.00', '1.0.0', '1.0.', '1.0..', '1.0-1.', '1.0~', '1.0~~', '1.0~~a', '1.0~a', '1.0~rc1', '1.0~rc1-1',
  '1.0~rc1~', '1.0~rc10', '1.0~rc2', '1.0+', '1.0++', '1.0+~', '1.0+b1', '1.0+dfsg', '1.0+dfsg-1',
  '1.0+dfsg~1', '1.0-1+b1', '1.0-1~bpo12+1', '1.0-1+deb12u1', '1.0-1+deb12u10', '1.0-1+deb12u9', '1.0a',
  '1.0A', '1.0Z', '1.0z', '1.0a~', '1.0a+', '1.0a.', '1.0-a', '1.0-A', '1.0-~', '1.0-+', '1.0-.', '1:0.1',
  '2:0', '01:1.0', '10:1', '9:1', '1.0-1-1', '1.0-1-1~', '1:1:1', '1:1:1-1', '1:1-1:1-1', '1.0001', '1.01',
  '1.000000000000000000000000000001', '1.18446744073709551615', '1.18446744073709551616',
  '1.99999999999999999999999999999999999', '1.100000000000000000000000000000000000', '1.1e3', '1e3',
  '2.36', '2.36.1', '2.36-9', '2.36-9+deb12u4', '9', '10', '1.2.3.4.5.6', '1-2-3-4', '1~-1', '1~~-1',
  '1a1a1', '1a1b', '1aa', '1ab', '1.0-0~', '2147483647:1',
];

function escape(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** dpkg's verdict for each pair, '<', '=' or '>' ('?' when dpkg refused a version), several shells in parallel. */
async function dpkgCompareAll(pairs: [string, string][], shells = 4): Promise<string[]> {
  const per = Math.ceil(pairs.length / shells);
  const batches: Promise<string[]>[] = [];
  for (let s = 0; s < pairs.length; s += per) {
    const script = pairs
      .slice(s, s + per)
      .map(([a, b]) => {
        const cmp = (op: string) => `dpkg --compare-versions ${escape(a)} ${op} ${escape(b)} 2>/dev/null`;
        return `${cmp('lt')}; case $? in 0) echo '<';; 1) ${cmp('eq')}; case $? in 0) echo '=';; 1) echo '>';; *) echo '?';; esac;; *) echo '?';; esac`;
      })
      .join('\n');
    batches.push(
      new Promise((resolve, reject) => {
        const child = spawn('sh', ['-s'], { stdio: ['pipe', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve(out.split('\n').filter((l) => l !== '')) : reject(new Error(`sh exited ${code}`))));
        child.stdin.end(`${script}\n`);
      }),
    );
  }
  return (await Promise.all(batches)).flat();
}

function sign(n: number): string {
  return n < 0 ? '<' : n > 0 ? '>' : '=';
}

/** [package, version, source version or undefined] for each paragraph, by a plain line scan. */
function scanVersions(text: string): [string, string, string | undefined][] {
  const out: [string, string, string | undefined][] = [];
  let name = '';
  let version = '';
  let source: string | undefined;
  const flush = () => {
    if (name !== '' && version !== '') out.push([name, version, source]);
    name = version = '';
    source = undefined;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') flush();
    else if (line.startsWith('Package:')) name = line.slice(8).trim();
    else if (line.startsWith('Version:')) version = line.slice(8).trim();
    else if (line.startsWith('Source:')) source = /\(([^)]+)\)/.exec(line)?.[1]?.trim();
  }
  flush();
  return out;
}

/** Deterministically takes about `n` items spread evenly over `xs`. */
function spread<T>(xs: T[], n: number): T[] {
  if (xs.length <= n) return xs;
  const out: T[] = [];
  const step = xs.length / n;
  for (let i = 0; i < n; i++) out.push(xs[Math.floor(i * step)]!);
  return out;
}

function realPairs(): { pairs: [string, string][]; sources: number } {
  const texts = [dpkgStatusText(), ...aptPackagesIndexes().map((i) => i.text)].filter((t) => t !== '');
  const byName = new Map<string, Set<string>>();
  const binSrc: [string, string][] = [];
  for (const text of texts) {
    for (const [name, version, source] of scanVersions(text)) {
      let set = byName.get(name);
      if (!set) byName.set(name, (set = new Set()));
      set.add(version);
      if (source !== undefined && source !== version) binSrc.push([version, source]);
    }
  }
  // Versions of the same package across indexes (stable, security, updates, installed).
  const same: [string, string][] = [];
  for (const name of [...byName.keys()].sort()) {
    const vs = [...byName.get(name)!].sort();
    for (let i = 0; i < vs.length; i++) for (let j = i + 1; j < vs.length; j++) same.push([vs[i]!, vs[j]!]);
  }
  // Versions of unrelated packages: neighbours in sorted order share prefixes, far ones do not.
  const all = [...new Set([...byName.values()].flatMap((s) => [...s]))].sort();
  const sample = spread(all, 1200);
  const mixed: [string, string][] = [];
  for (let i = 0; i + 1 < sample.length; i++) mixed.push([sample[i]!, sample[i + 1]!], [sample[i]!, sample[(i * 7919) % sample.length]!]);
  return { pairs: [...spread(same, 1500), ...spread(binSrc, 800), ...mixed], sources: texts.length };
}

test('compareVersions agrees with dpkg --compare-versions on every pair', async (t) => {
  if (!hasDpkg) return t.fail('dpkg is needed as the oracle');
  const { pairs: real, sources } = realPairs();
  const nasty: [string, string][] = [];
  for (let i = 0; i < NASTY.length; i++) for (let j = i; j < NASTY.length; j++) nasty.push([NASTY[i]!, NASTY[j]!]);
  const pairs = [...nasty, ...real];
  t.true(real.length >= (sources > 1 ? 3000 : 500), `only ${real.length} real pairs from ${sources} indexes`);
  const started = Date.now();
  const oracle = await dpkgCompareAll(pairs);
  t.log(`${pairs.length} pairs (${real.length} real, from ${sources} indexes) checked by dpkg in ${Date.now() - started} ms`);
  t.is(oracle.length, pairs.length);
  const mismatches: string[] = [];
  pairs.forEach(([a, b], i) => {
    const want = oracle[i]!;
    if (want === '?') mismatches.push(`dpkg refused ${a} / ${b}`);
    const got = sign(compareVersions(a, b));
    const back = sign(compareVersions(b, a));
    if (got !== want) mismatches.push(`${a} ${got} ${b}, dpkg says ${want}`);
    if (back !== ({ '<': '>', '>': '<', '=': '=' } as Record<string, string>)[want]) mismatches.push(`${b} ${back} ${a} (reversed), dpkg says ${a} ${want} ${b}`);
  });
  t.deepEqual(mismatches.slice(0, 20), []);
  t.true(oracle.includes('<') && oracle.includes('=') && oracle.includes('>'));
});

test('dpkg ordering rules, spelled out', (t) => {
  const ordered = ['1.0~~', '1.0~~a', '1.0~', '1.0~rc1', '1.0~rc2', '1.0~rc10', '1.0', '1.0-1', '1.0-1+b1', '1.0a', '1.0+dfsg', '1.0.1', '1.1', '1:0.1'];
  for (let i = 0; i + 1 < ordered.length; i++) t.true(compareVersions(ordered[i]!, ordered[i + 1]!) < 0, `${ordered[i]} < ${ordered[i + 1]}`);
  t.is(compareVersions('1.0', '1.0-0'), 0, 'missing revision equals -0');
  t.is(compareVersions('0:1.0', '1.0'), 0, 'missing epoch equals 0:');
  t.is(compareVersions('1.001', '1.1'), 0, 'leading zeros do not count');
  t.true(compareVersions('1.18446744073709551616', '1.18446744073709551615') > 0, 'digit runs beyond 2^64 compare exactly');
  t.true(compareVersions('1.99999999999999999999', '1.100000000000000000000') < 0);
  t.true(compareVersions('2:1', '10:0') < 0, 'epochs compare numerically');
});

test('parseVersion splits epoch, upstream and revision as dpkg does', (t) => {
  t.deepEqual(parseVersion('1:2.36-9+deb12u4'), { epoch: 1, upstream: '2.36', revision: '9+deb12u4' });
  t.deepEqual(parseVersion('1.0-1-2'), { epoch: 0, upstream: '1.0-1', revision: '2' });
  t.deepEqual(parseVersion('2:1:1'), { epoch: 2, upstream: '1:1', revision: '' });
  t.deepEqual(parseVersion(' 3.0 '), { epoch: 0, upstream: '3.0', revision: '' });
  t.is(formatVersion(parseVersion('01:2.0-1')), '1:2.0-1');
  t.is(formatVersion(parseVersion('0:2.0')), '2.0');
  t.throws(() => parseVersion('1.0-'), { message: /revision number is empty/ });
});

test('isValidVersion and parseVersion errors agree with dpkg --validate-version', (t) => {
  if (!hasDpkg) return t.fail('dpkg is needed as the oracle');
  const cases = [
    '1.0', ' 1.0', '1.0 ', '1 .0', '', ' ', 'a1.0', '1.0_1', '1.0-a_b', '1:1.0', '01:1.0', ':1', 'a:1', '1a:1',
    '+1:2', '-1:2', '-0:2', '1::2', '1:', '0:', '99999999999:1', '2147483647:1', '2147483648:1', '1.0-',
    '-1', '1.0-1-2', '1.0-1:2', '1~rc1', '1.0+really0.9-1', '1.0\u00e9', '1.0-1\u00e9', '1.0:1', '1.0-+~.',
    '1.0-1.2.3', '1.0/1', '1.0\t', '\t1.0', '1,0',
  ];
  for (const v of cases) {
    const r = spawnSync('dpkg', ['--validate-version', '--', v], { encoding: 'utf8' });
    const dpkgMessage = /has bad syntax: (.*)$/m.exec(r.stderr)?.[1];
    t.is(isValidVersion(v), r.status === 0, `isValidVersion(${JSON.stringify(v)}); dpkg: ${r.stderr.trim()}`);
    if (r.status === 0) t.notThrows(() => parseVersion(v));
    else t.throws(() => parseVersion(v), { message: `invalid version "${v}": ${dpkgMessage}` }, `dpkg: ${r.stderr.trim()}`);
  }
});
