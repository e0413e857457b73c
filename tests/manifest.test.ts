import test from 'ava';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { channelUrls, hostDebianMirror } from '../channels/mirror.ts';
import { StrataError } from '../errors.ts';

function write(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'strata-manifest-'));
  const f = join(dir, 'strata.toml');
  writeFileSync(f, text);
  return f;
}

const GOOD = `[project]
name = "gp-lidar"
arch = "amd64"

[channels.stable]
suite = "trixie"
components = ["main", "contrib", "non-free"]

[channels.current]
url = "http://127.0.0.1:9/debian"
suite = "forky"

[packages]
git = "*"
python3-numpy = "*"
python3-gdal = { channel = "current" }
nvidia-cuda-toolkit = ">= 12.4"

[gpu]
driver = "host"

[env]
OMP_NUM_THREADS = "8"
`;

test('the issue\'s example manifest parses with its meaning', (t) => {
  const m = loadManifest(write(GOOD));
  t.is(m.name, 'gp-lidar');
  t.deepEqual(m.channels.map((c) => c.name), ['stable', 'current']);
  t.deepEqual(m.channels[1]!.urls, ['http://127.0.0.1:9/debian']);
  t.deepEqual(m.packages.find((p) => p.name === 'python3-gdal'), { name: 'python3-gdal', channel: 'current' });
  t.deepEqual(m.packages.find((p) => p.name === 'nvidia-cuda-toolkit')!.constraint, { op: '>=', version: '12.4' });
  t.is(m.image.gpuDriver, 'host');
  t.deepEqual(m.image.env, { OMP_NUM_THREADS: '8' });
  t.regex(m.sha256, /^[0-9a-f]{64}$/);
});

function fails(t: import('ava').ExecutionContext, text: string, pattern: RegExp) {
  const f = write(text);
  const e = t.throws(() => loadManifest(f), { instanceOf: StrataError });
  t.is(e.code, 'E_MANIFEST');
  t.true(e.message.startsWith(f), e.message);
  t.regex(e.message, pattern);
}

test('unknown keys are reported with file, line and column', (t) => {
  fails(t, GOOD.replace('suite = "forky"', 'suite = "forky"\n  mirror = "x"'), /:12:3: unknown key "mirror" in \[channels\.current\]/);
  fails(t, GOOD + '\n[extras]\nx = 1\n', /:25:1: unknown key "extras"/);
});

test('wrong types are reported with file, line and column', (t) => {
  fails(t, GOOD.replace('arch = "amd64"', 'arch = 64'), /:3:1: project\.arch must be a string, not number 64/);
  fails(t, GOOD.replace('git = "*"', 'git = 3'), /:14:1: packages\.git must be a version string/);
  fails(t, GOOD.replace('{ channel = "current" }', '{ channel = "nightly" }'), /:16:1: package "python3-gdal" asks for channel "nightly", which is not declared/);
});

test('TOML syntax errors are reported with file, line and column', (t) => {
  fails(t, GOOD.replace('git = "*"', 'git = "*'), /:14:\d+: TOML syntax error/);
});

test('a bad version constraint is refused', (t) => {
  fails(t, GOOD.replace('">= 12.4"', '">= twelve point four!"'), /packages\.nvidia-cuda-toolkit/);
});

test('a channel without url takes the mirror from STRATA_DEBIAN_MIRROR, else the host apt sources, else says how to set one', (t) => {
  const m = loadManifest(write(GOOD));
  const stable = m.channels[0]!;
  t.deepEqual(channelUrls(stable, { STRATA_DEBIAN_MIRROR: 'http://127.0.0.2/debian/' }, '/nonexistent'), ['http://127.0.0.2/debian']);
  const root = mkdtempSync(join(tmpdir(), 'strata-etc-'));
  mkdirSync(join(root, 'etc/apt/sources.list.d'), { recursive: true });
  writeFileSync(join(root, 'etc/apt/sources.list.d/debian.sources'), 'Types: deb\nURIs: http://127.0.0.3/debian\nSuites: trixie trixie-updates\nComponents: main\n\nTypes: deb\nURIs: http://127.0.0.3/debian-security\nSuites: trixie-security\nComponents: main\n');
  t.is(hostDebianMirror(root), 'http://127.0.0.3/debian');
  t.deepEqual(channelUrls(stable, {}, root), ['http://127.0.0.3/debian']);
  const one = mkdtempSync(join(tmpdir(), 'strata-etc-'));
  mkdirSync(join(one, 'etc/apt'), { recursive: true });
  writeFileSync(join(one, 'etc/apt/sources.list'), '# comment\ndeb [arch=amd64] http://127.0.0.4/debian bookworm main\n');
  t.deepEqual(channelUrls(stable, {}, one), ['http://127.0.0.4/debian']);
  const e = t.throws(() => channelUrls(stable, {}, '/nonexistent'), { instanceOf: StrataError });
  t.is(e.code, 'E_MIRROR');
  t.regex(e.hint!, /STRATA_DEBIAN_MIRROR/);
});

test('[resolve] essential defaults to true and can be turned off', (t) => {
  const load = (text: string) => loadManifest(write(text));
  t.true(load('[project]\nname = "x"\n[channels.s]\nsuite = "trixie"\n[packages]\nhello = "*"\n').withEssential);
  t.false(load('[project]\nname = "x"\n[channels.s]\nsuite = "trixie"\n[packages]\nhello = "*"\n[resolve]\nessential = false\n').withEssential);
});
