/**
 * Recipes end to end, through the real CLI: sources served on loopback (beside the signed fixture archive) or a
 * local git repository, build environments from the fixture archive (busybox's sh: no compiler there, so the
 * builds are shell), the sandbox, the store, and independent checkers of the result (umoci, dpkg-query, git).
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tarStream from 'tar-stream';
import { closeSharedMirror, manifestFor, project, STRATA, type Project } from './helpers/project.ts';
import { parseLock, serializeLock } from '../lock/lockfile.ts';

test.after.always(closeSharedMirror);

interface Recipe {
  version?: string;
  source?: string;
  sources?: string[];
  buildDepends?: string[];
  depends?: string[];
  env?: Record<string, string>;
  build: string[];
  prefix?: string;
}

const toml = (s: string) => JSON.stringify(s);
const list = (xs: string[]) => `[\n${xs.map((x) => `  ${toml(x)},\n`).join('')}]`;

function recipesToml(recipes: Record<string, Recipe>): string {
  return Object.entries(recipes)
    .map(([name, r]) =>
      [
        `[recipes.${name}]`,
        `version = ${toml(r.version ?? '1.0')}`,
        ...(r.source ? [`source = ${r.source}`] : []),
        ...(r.sources ? [`sources = [${r.sources.join(', ')}]`] : []),
        `build-depends = ${list(r.buildDepends ?? ['busybox-fixture'])}`,
        ...(r.depends ? [`depends = ${list(r.depends)}`] : []),
        ...(r.prefix ? [`prefix = ${toml(r.prefix)}`] : []),
        ...(r.env ? [`env = { ${Object.entries(r.env).map(([k, v]) => `${k} = ${toml(v)}`).join(', ')} }`] : []),
        `build = ${list(r.build)}`,
        '',
      ].join('\n'),
    )
    .join('\n');
}

function writeRecipes(p: Project, recipes: Record<string, Recipe>, packages = 'busybox-fixture = "*"'): void {
  p.writeManifest(manifestFor(p, packages, `\n${recipesToml(recipes)}`));
}

/** A .tar.gz made by the host's tar from `files` under a top directory, served by the fixture server under sources/. */
function tarball(p: Project, files: Record<string, string>): { file: string; url: string; mirror: string; sha256: string } {
  const name = `src-${randomBytes(6).toString('hex')}`;
  const work = mkdtempSync(join(tmpdir(), 'strata-src-'));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(work, name, path, '..'), { recursive: true });
    writeFileSync(join(work, name, path), content);
  }
  mkdirSync(join(p.mirror.root, 'sources'), { recursive: true });
  const file = join(p.mirror.root, 'sources', `${name}.tar.gz`);
  execFileSync('tar', ['-C', work, '-czf', file, name]);
  const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
  return { file, url: `${p.served.url}/sources/${name}.tar.gz`, mirror: `mirror://stable/sources/${name}.tar.gz`, sha256 };
}

const src = (url: string, sha256: string, dest?: string) => `{ url = ${toml(url)}, sha256 = ${toml(sha256)}${dest ? `, dest = ${toml(dest)}` : ''} }`;

async function ok(p: Project, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  const r = await p.strata(args, { env, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`strata ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r;
}

const inEnv = (p: Project, script: string, env: NodeJS.ProcessEnv = {}) => ok(p, ['run', '--backend', 'sandbox', '--', '/bin/sh', '-c', script], env).then((r) => r.stdout);
const built = (stderr: string) => [...stderr.matchAll(/^building recipe (\S+) /gm)].map((m) => m[1]!).sort();

/** The recipe outputs the store holds (its `recipes` namespace), ignoring temp names. */
function storedOutputs(cache: string): string[] {
  const dir = join(cache, 'recipes');
  return existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith('.')) : [];
}

const GREET_BUILD = [
  'mkdir -p $PREFIX/bin $PREFIX/share/greet $PREFIX/lib',
  'cp message.txt $PREFIX/share/greet/message.txt',
  'cp /usr/share/pkg-zstd/hello.txt $PREFIX/share/greet/from-build-only-package.txt',
  "printf '#!/bin/sh\\ncat %s/share/greet/message.txt\\n' \"$PREFIX\" > $PREFIX/bin/greet",
  'chmod 755 $PREFIX/bin/greet',
  'echo "a library of $PREFIX" > $PREFIX/lib/libgreet.txt',
];
const SHOUT_BUILD = [
  'mkdir -p $PREFIX/bin $PREFIX/share/shout',
  'greet | tr a-z A-Z > $PREFIX/share/shout/loud.txt',
  "printf '#!/bin/sh\\ncat %s/share/shout/loud.txt\\n' \"$PREFIX\" > $PREFIX/bin/shout && chmod 755 $PREFIX/bin/shout",
];

test('a recipe builds from a tarball on loopback (mirror://), a recipe builds on its output, both run under strata run, and a second realise builds nothing', async (t) => {
  const p = await project();
  const s = tarball(p, { 'message.txt': 'hello from a recipe\n' });
  writeRecipes(p, {
    greet: { source: src(s.mirror, s.sha256), buildDepends: ['busybox-fixture', 'pkg-zstd'], build: GREET_BUILD },
    shout: { version: '2.0', depends: ['recipe:greet'], build: SHOUT_BUILD },
  });
  const lock = await ok(p, ['lock']);
  t.regex(lock.stdout, /recipe greet 1\.0: 1 source, build environment of 3 packages/);
  const text = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  t.regex(text, /^version = 2$/m);
  t.is(text.match(/^\[\[recipe\]\]$/gm)?.length, 2);
  t.regex(text, new RegExp(`url = "${s.mirror}"\\nsha256 = "${s.sha256}"`));
  // pkg-zstd is a build package of greet, not a package of the environment.
  const [envPart, recipePart] = text.split('[[recipe]]');
  t.notRegex(envPart!, /name = "pkg-zstd"/);
  t.regex(recipePart!, /\[\[recipe\.build-package\]\]\nname = "pkg-zstd"/);
  await ok(p, ['lock', '--check']);

  const first = await ok(p, ['realise', '--oci', join(p.dir, 'oci')]);
  t.deepEqual(built(first.stderr), ['greet', 'shout']);
  t.regex(first.stderr, /^built recipe greet 1\.0 in [\d.]+ s: 4 files under \/usr\/local$/m);
  t.regex(first.stdout, /2 packages and 2 recipes in \d+ layers/);

  t.is(await inEnv(p, 'greet; shout; cat /usr/local/share/greet/from-build-only-package.txt'), 'hello from a recipe\nHELLO FROM A RECIPE\nhello from pkg-zstd\n');
  // The build-only package is absent from the image, files and dpkg database alike.
  t.is(await inEnv(p, 'if [ -e /usr/share/pkg-zstd ]; then echo present; else echo absent; fi; grep -c "^Package: pkg-zstd$" /var/lib/dpkg/status || true'), 'absent\n0\n');
  t.is(await inEnv(p, 'echo "$PATH|$LD_LIBRARY_PATH"'), '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/usr/local/lib\n');

  // dpkg sees the outputs (an independent reader of the database: dpkg-query over the image unpacked by umoci).
  const index = JSON.parse(readFileSync(join(p.dir, 'oci/index.json'), 'utf8'));
  const ref = index.manifests[0].annotations['org.opencontainers.image.ref.name'];
  const bundle = join(mkdtempSync(join(tmpdir(), 'strata-bundle-')), 'b');
  execFileSync('umoci', ['unpack', '--image', `${join(p.dir, 'oci')}:${ref}`, bundle], { stdio: 'pipe' });
  const admin = join(bundle, 'rootfs/var/lib/dpkg');
  t.is(execFileSync('dpkg-query', [`--admindir=${admin}`, '-W', '-f', '${Package} ${Version} ${Depends}\n', 'strata-recipe-*'], { encoding: 'utf8' }), 'strata-recipe-greet 1.0 \nstrata-recipe-shout 2.0 strata-recipe-greet\n');
  t.regex(execFileSync('dpkg-query', [`--admindir=${admin}`, '-S', '/usr/local/bin/greet'], { encoding: 'utf8' }), /^strata-recipe-greet: \/usr\/local\/bin\/greet$/m);
  const prov = JSON.parse(readFileSync(join(bundle, 'rootfs/usr/share/doc/strata-recipe-greet/provenance.json'), 'utf8'));
  const input = /\[\[recipe\]\]\nname = "greet"[^]*?\ninput = "(sha256:[0-9a-f]{64})"/.exec(text)![1];
  t.is(prov.input, input);
  t.deepEqual(prov.sources, [{ url: s.mirror, sha256: s.sha256 }]);
  t.true(prov.buildPackages.includes('pkg-zstd=1.0-1'));

  const second = await ok(p, ['realise']);
  t.deepEqual(built(second.stderr), []);
  t.regex(second.stdout, /\(0 built, \d+ cached\)/);
});

test("changing one recipe's build rebuilds it and the recipes that depend on it, nothing else", async (t) => {
  const p = await project();
  const recipes: Record<string, Recipe> = {
    base: { build: ['mkdir -p $PREFIX/share', 'echo base-1 > $PREFIX/share/base.txt'] },
    mid: { depends: ['recipe:base'], build: ['mkdir -p $PREFIX/share', 'cat $PREFIX/share/base.txt > $PREFIX/share/mid.txt', 'echo mid-1 >> $PREFIX/share/mid.txt'] },
    other: { build: ['mkdir -p $PREFIX/share', 'echo other-1 > $PREFIX/share/other.txt'] },
  };
  writeRecipes(p, recipes);
  t.deepEqual(built((await ok(p, ['realise'])).stderr), ['base', 'mid', 'other']);
  t.deepEqual(built((await ok(p, ['realise'])).stderr), []);

  recipes.mid!.build[2] = 'echo mid-2 >> $PREFIX/share/mid.txt';
  writeRecipes(p, recipes);
  t.deepEqual(built((await ok(p, ['realise'])).stderr), ['mid']);
  t.is(await inEnv(p, 'cat /usr/local/share/mid.txt'), 'base-1\nmid-2\n');

  recipes.base!.build[1] = 'echo base-2 > $PREFIX/share/base.txt';
  writeRecipes(p, recipes);
  t.deepEqual(built((await ok(p, ['realise'])).stderr), ['base', 'mid']);
  t.is(await inEnv(p, 'cat /usr/local/share/base.txt /usr/local/share/mid.txt /usr/local/share/other.txt'), 'base-2\nbase-2\nmid-2\nother-1\n');
});

for (const method of ['bwrap', 'unshare']) {
  test(`a build (${method}) has no network, cannot write outside $PREFIX, /tmp and its HOME, and is uid 0 of its own user namespace`, async (t) => {
    const p = await project();
    // A file the server has: only the network namespace can keep the build from reaching it.
    const secret = `/sources/probe-${randomBytes(6).toString('hex')}.txt`;
    mkdirSync(join(p.mirror.root, 'sources'), { recursive: true });
    writeFileSync(join(p.mirror.root, secret), 'reachable\n');
    const report = '$PREFIX/share/report';
    writeRecipes(p, {
      probe: {
        build: [
          'mkdir -p $PREFIX/share',
          // (busybox's wget is no use here: the static build's resolver crashes; nc speaks the HTTP itself.)
          `(printf 'GET ${secret} HTTP/1.0\\r\\n\\r\\n'; sleep 1) | busybox nc -w 5 127.0.0.1 ${new URL(p.served.url).port} > /tmp/got 2>/dev/null || true`,
          `if grep -q reachable /tmp/got; then echo net=reached >> ${report}; else echo net=unreachable >> ${report}; fi`,
          `for f in /usr/bin/evil /evil /etc/evil /build/evil /usr/local/../evil ${p.dir}/evil; do if touch $f 2>/dev/null; then echo "write $f=done" >> ${report}; else echo "write $f=refused" >> ${report}; fi; done`,
          `touch /tmp/t $HOME/h /build/src/s && echo "scratch=writable" >> ${report}`,
          `echo "uid=$(id -u) cwd=$(pwd) home=$HOME tz=$TZ lang=$LANG jobs-set=\${JOBS:+yes} sde=$SOURCE_DATE_EPOCH" >> ${report}`,
          `if mount -o remount,rw /usr 2>/dev/null; then echo remount=done >> ${report}; else echo remount=refused >> ${report}; fi`,
        ],
      },
    });
    await ok(p, ['realise'], { STRATA_SANDBOX: method });
    t.is(
      await inEnv(p, 'cat /usr/local/share/report', { STRATA_SANDBOX: method }),
      [
        'net=unreachable',
        ...['/usr/bin/evil', '/evil', '/etc/evil', '/build/evil', '/usr/local/../evil', `${p.dir}/evil`].map((f) => `write ${f}=refused`),
        'scratch=writable',
        'uid=0 cwd=/build/src home=/build/home tz=UTC lang=C.UTF-8 jobs-set=yes sde=1725192000',
        'remount=refused',
        '',
      ].join('\n'),
    );
    t.false(p.served.requests.includes(secret), 'the request never reached the server');
    t.false(existsSync(join(p.dir, 'evil')));
  });
}

test('two realises with different caches and temp dirs give the same recipe layer and image digests; strata build --check passes', async (t) => {
  const p = await project();
  const s = tarball(p, { 'message.txt': 'reproducible\n', 'sub/data.txt': 'data\n' });
  writeRecipes(p, {
    greet: { source: src(s.url, s.sha256), buildDepends: ['busybox-fixture', 'pkg-zstd'], build: [...GREET_BUILD, 'cp -r sub $PREFIX/share/greet/sub', 'ln -s message.txt $PREFIX/share/greet/link', 'ln $PREFIX/share/greet/message.txt $PREFIX/share/greet/hard'] },
    shout: { depends: ['recipe:greet'], build: SHOUT_BUILD },
  });
  await ok(p, ['lock']);
  const digests: { image: string; layers: string[] }[] = [];
  for (const n of ['a', 'b']) {
    const tmp = mkdtempSync(join(tmpdir(), `strata-tmp-${n}-`));
    const layout = join(p.dir, `oci-${n}`);
    const r = await ok(p, ['realise', '--locked', '--oci', layout], { STRATA_CACHE_DIR: join(p.dir, `cache-${n}`), TMPDIR: tmp });
    t.deepEqual(built(r.stderr), ['greet', 'shout']);
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    const blob = (d: string) => JSON.parse(readFileSync(join(layout, 'blobs/sha256', d.slice(7)), 'utf8'));
    const manifest = blob(index.manifests[0].digest);
    const config = blob(manifest.config.digest);
    const recipeLayers = config.history.map((h: { created_by: string }, i: number) => (h.created_by.includes('recipe ') ? manifest.layers[i].digest : undefined)).filter(Boolean);
    t.is(recipeLayers.length, 2);
    digests.push({ image: /^image (sha256:[0-9a-f]{64})$/m.exec(r.stdout)![1]!, layers: recipeLayers });
  }
  t.deepEqual(digests[0], digests[1]);
  const check = await ok(p, ['build', 'greet', '--check'], { STRATA_CACHE_DIR: join(p.dir, 'cache-a') });
  t.regex(check.stdout, /^check: a second build in a fresh sandbox is identical, byte for byte \(7 files\)$/m);
  t.is(await inEnv(p, 'cat /usr/local/share/greet/link /usr/local/share/greet/hard /usr/local/share/greet/sub/data.txt', { STRATA_CACHE_DIR: join(p.dir, 'cache-a') }), 'reproducible\nreproducible\ndata\n');
});

test('strata build --check names the first file where a second build differs', async (t) => {
  const p = await project();
  writeRecipes(p, { stamp: { build: ['mkdir -p $PREFIX/share/stamp', 'echo same > $PREFIX/share/stamp/a', 'cat /proc/sys/kernel/random/uuid > $PREFIX/share/stamp/b'] } });
  const r = await p.strata(['build', 'stamp', '--check'], { timeoutMs: 120_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^error: recipe stamp is not reproducible: the second build differs from the first at \/usr\/local\/share\/stamp\/b: its content differs/m);
  const again = await ok(p, ['build', 'stamp']);
  t.regex(again.stdout, /already built \(cached\)/);
  const rebuilt = await ok(p, ['build', 'stamp', '--rebuild']);
  t.regex(rebuilt.stdout, /built in [\d.]+ s/);
});

test('a wrong sha256 and a source that 404s each give one clear message, a non-zero exit, and nothing in the store under the recipe', async (t) => {
  const p = await project();
  const s = tarball(p, { 'message.txt': 'x\n' });
  const wrong = 'ab'.repeat(32);
  writeRecipes(p, { bad: { source: src(s.url, wrong), build: ['true'] } });
  const r = await p.strata(['realise'], { timeoutMs: 120_000 });
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`^error: recipe bad: source ${s.url}: sha256 mismatch for ${s.url}: expected ${wrong}, received ${s.sha256}$`, 'm'));
  t.regex(r.stderr, /^hint: the sha256 in strata.toml does not match/m);
  t.deepEqual(storedOutputs(p.cache), []);

  writeRecipes(p, { gone: { source: src(`${p.served.url}/sources/no-such-file.tar.gz`, s.sha256), build: ['true'] } });
  const g = await p.strata(['realise'], { timeoutMs: 120_000 });
  t.is(g.code, 1);
  t.regex(g.stderr, /^error: recipe gone: source http:\/\/127\.0\.0\.1:\d+\/sources\/no-such-file\.tar\.gz is not there \(HTTP 404 from the server\)$/m);
  t.is(g.stderr.match(/^error:/gm)?.length, 1);
  t.deepEqual(storedOutputs(p.cache), []);
});

test('a failing build step shows its exit code and the last lines of its log, leaves nothing in the store, and the next realise starts afresh', async (t) => {
  const p = await project();
  const lines = Array.from({ length: 30 }, (_, i) => `echo line-${i + 1}`).join('; ');
  writeRecipes(p, { fails: { build: ['mkdir -p $PREFIX/share', `${lines}; echo "about to fail" >&2`, 'exit 7', 'echo never'] } });
  const r = await p.strata(['realise'], { timeoutMs: 120_000 });
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: recipe fails: build step 3 of 4 \("exit 7"\) failed with exit code 7; the last lines of its log:$/m);
  t.regex(r.stderr, /^ {2}\| about to fail$/m);
  t.regex(r.stderr, /^ {2}\| line-30$/m);
  t.notRegex(r.stderr, /\| line-5$/m, 'only the last lines');
  t.notRegex(r.stderr, /never/);
  const log = /^hint: the whole log: (\S+)$/m.exec(r.stderr)![1]!;
  t.regex(readFileSync(log, 'utf8'), /line-1\n/);
  t.deepEqual(storedOutputs(p.cache), []);

  writeRecipes(p, { fails: { build: ['mkdir -p $PREFIX/share', 'echo fixed > $PREFIX/share/f'] } });
  const fixed = await ok(p, ['realise']);
  t.deepEqual(built(fixed.stderr), ['fails']);
  t.is(storedOutputs(p.cache).length, 1);
});

test('a recipe cycle, a depends on an unknown recipe and on an unknown package are refused with one message each', async (t) => {
  const p = await project();
  writeRecipes(p, { a: { depends: ['recipe:b'], build: ['true'] }, b: { buildDepends: ['busybox-fixture', 'recipe:a'], build: ['true'] } });
  const cycle = await p.strata(['lock']);
  t.is(cycle.code, 1);
  t.regex(cycle.stderr, /^error: \S+strata\.toml:\d+:1: recipes depend on each other in a cycle: a -> b -> a$/m);

  writeRecipes(p, { a: { depends: ['recipe:nope'], build: ['true'] } });
  const unknown = await p.strata(['lock']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^error: \S+strata\.toml:\d+:1: recipe "a" depends on recipe:nope, which strata.toml does not define$/m);

  writeRecipes(p, { a: { depends: ['zlib1', 'busybox-fixture'], build: ['true'] } });
  const pkg = await p.strata(['lock']);
  t.is(pkg.code, 4);
  t.regex(pkg.stderr, /^error: recipe "a": depends names package "zlib1", which is in none of the channels \(stable, current\)$/m);
  t.regex(pkg.stderr, /^hint: did you mean: zlib1g/m);
  t.false(existsSync(join(p.dir, 'strata.lock')));
});

test('a git source from a local repository is locked by commit and tree hash, builds, and locks the same again', async (t) => {
  const p = await project();
  const repo = join(p.dir, 'upstream');
  mkdirSync(join(repo, 'bin'), { recursive: true });
  writeFileSync(join(repo, 'bin/hi'), '#!/bin/sh\necho "hi from git"\n', { mode: 0o755 });
  writeFileSync(join(repo, 'README'), 'a repository\n');
  const git = (...args: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@strata.invalid', ...args], { encoding: 'utf8', env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null' } }).trim();
  git('init', '-q');
  git('add', '.');
  git('commit', '-q', '-m', 'first');
  const rev = git('rev-parse', 'HEAD');
  writeFileSync(join(repo, 'README'), 'moved on\n');
  git('commit', '-q', '-am', 'second');
  writeRecipes(p, { hi: { source: `{ git = "upstream", rev = "${rev}" }`, build: ['mkdir -p $PREFIX/bin', 'cp bin/hi $PREFIX/bin/hi', 'cp README $PREFIX/README.txt'] } });
  await ok(p, ['lock']);
  const text = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  const sha = new RegExp(`git = "upstream"\\nrev = "${rev}"\\nsha256 = "([0-9a-f]{64})"`).exec(text)?.[1];
  t.truthy(sha, text);
  t.is(await inEnv(p, 'hi; cat /usr/local/README.txt'), 'hi from git\na repository\n');
  // The tree's tar is a function of the commit: a fresh store (no tar kept) locks the same bytes.
  await ok(p, ['lock'], { STRATA_CACHE_DIR: join(p.dir, 'cache-2') });
  t.is(readFileSync(join(p.dir, 'strata.lock'), 'utf8'), text);

  writeRecipes(p, { hi: { source: `{ git = "upstream", rev = "${'0'.repeat(40)}" }`, build: ['true'] } });
  const missing = await p.strata(['lock']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, new RegExp(`^error: recipe hi: git source upstream: cannot get commit ${'0'.repeat(40)} from upstream`, 'm'));
});

test('lock --check notices a changed recipe, and a lock whose recipe entry was edited is refused naming the recipe', async (t) => {
  const p = await project();
  const recipes: Record<string, Recipe> = { greet: { build: ['mkdir -p $PREFIX/share', 'echo 1 > $PREFIX/share/x'] } };
  writeRecipes(p, recipes);
  await ok(p, ['lock']);
  await ok(p, ['lock', '--check']);
  recipes.greet!.build[1] = 'echo 2 > $PREFIX/share/x';
  writeRecipes(p, recipes);
  const stale = await p.strata(['lock', '--check']);
  t.is(stale.code, 3);
  t.regex(stale.stderr, /strata\.toml changed since strata\.lock was written/);
  await ok(p, ['lock']);

  const path = join(p.dir, 'strata.lock');
  const good = readFileSync(path, 'utf8');
  t.is(serializeLock(parseLock(good)), good, 'the one serializer reads back what it wrote, to the byte');
  writeFileSync(path, good.replace(/^input = "sha256:[0-9a-f]{4}/m, 'input = "sha256:0000'));
  const edited = await p.strata(['realise', '--locked']);
  t.is(edited.code, 3);
  t.regex(edited.stderr, /^error: strata\.lock: recipe greet: recorded input sha256:0000\S* but its text, sources, build closure and recipe dependencies give sha256:/m);

  writeFileSync(path, good.replace(/(\[\[recipe\.build-package\]\]\nname = "busybox-fixture"[^]*?sha256 = ")[0-9a-f]{4}/, '$10000'));
  const pkg = await p.strata(['realise', '--locked']);
  t.is(pkg.code, 3);
  t.regex(pkg.stderr, /^error: strata\.lock: recipe greet: build package busybox-fixture: recorded closure/m);

  // The recipe's text is in the lock: changing its build there (closures and all) no longer matches the manifest.
  writeFileSync(path, good.replace('echo 2 > $PREFIX/share/x', 'echo 3 > $PREFIX/share/x'));
  const text = await p.strata(['realise', '--locked']);
  t.is(text.code, 3);
  t.regex(text.stderr, /recipe greet: recorded input/);
});

test('a source archive that climbs out of the tree or writes through a symlink is refused before anything is written there', async (t) => {
  const p = await project();
  const target = mkdtempSync(join(tmpdir(), 'strata-target-'));
  const hostile = async (entries: { name: string; type?: 'symlink'; linkname?: string; body?: string }[]) => {
    const pack = tarStream.pack();
    const chunks: Buffer[] = [];
    pack.on('data', (c) => void chunks.push(c as Buffer));
    const done = new Promise<void>((r) => pack.on('end', () => r()));
    for (const e of entries) pack.entry(e.type ? { name: e.name, type: e.type, linkname: e.linkname! } : { name: e.name }, e.body ?? '');
    pack.finalize();
    await done;
    const name = `hostile-${randomBytes(6).toString('hex')}.tar`;
    mkdirSync(join(p.mirror.root, 'sources'), { recursive: true });
    const bytes = Buffer.concat(chunks);
    writeFileSync(join(p.mirror.root, 'sources', name), bytes);
    return { url: `${p.served.url}/sources/${name}`, sha256: createHash('sha256').update(bytes).digest('hex') };
  };
  const through = await hostile([{ name: 'top/link', type: 'symlink', linkname: target }, { name: 'top/link/evil', body: 'x' }]);
  writeRecipes(p, { bad: { source: src(through.url, through.sha256), build: ['true'] } });
  const r = await p.strata(['realise'], { timeoutMs: 120_000 });
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: recipe bad: source \S+: the archive writes top\/link\/evil below top\/link, which is not a directory$/m);
  const up = await hostile([{ name: 'top/ok', body: 'x' }, { name: 'top/../../evil', body: 'x' }]);
  writeRecipes(p, { bad: { source: src(up.url, up.sha256), build: ['true'] } });
  const u = await p.strata(['realise'], { timeoutMs: 120_000 });
  t.is(u.code, 1);
  t.regex(u.stderr, /^error: recipe bad: source \S+: the archive holds an unsafe path "top\/\.\.\/\.\.\/evil"/m);
  // A later source's dest through a symlink an earlier source made.
  const link = await hostile([{ name: 'top/sub', type: 'symlink', linkname: target }, { name: 'top/README', body: 'x' }]);
  const plain = tarball(p, { 'file.txt': 'x\n' });
  writeRecipes(p, { bad: { sources: [src(link.url, link.sha256), src(plain.url, plain.sha256, 'sub/x')], build: ['true'] } });
  const d = await p.strata(['realise'], { timeoutMs: 120_000 });
  t.is(d.code, 1);
  t.regex(d.stderr, /^error: recipe bad: source \S+: its dest sub\/x runs into sub, which an earlier source made a symlink$/m);
  t.deepEqual(readdirSync(target), []);
  t.deepEqual(storedOutputs(p.cache), []);
});

for (const method of ['bwrap', 'unshare']) {
  test(`a SIGINT to strata (${method}) stops a running build whole: nothing of it is left running or stored`, async (t) => {
    const p = await project();
    const marker = String(400000 + Math.floor(Math.random() * 90000));
    writeRecipes(p, { slow: { build: ['mkdir -p $PREFIX/share', `busybox sleep ${marker}`] } });
    await ok(p, ['lock']);
    const child = spawn(STRATA, ['realise'], { cwd: p.dir, env: { ...process.env, CI: '1', STRATA_CACHE_DIR: p.cache, STRATA_SANDBOX: method }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    await new Promise<void>((r) => {
      child.stderr.on('data', (d) => {
        stderr += d;
        if (/^building recipe slow /m.test(stderr)) r();
      });
    });
    // Wait until the sleep runs inside the sandbox, then interrupt strata alone (as a batch system would).
    const sleeps = () =>
      execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
        .split('\n')
        .map((l) => /^\s*(\d+) (.*)$/.exec(l))
        .filter((m) => m?.[2] === `busybox sleep ${marker}`)
        .map((m) => Number(m![1]));
    const running = () => sleeps().length > 0;
    for (let i = 0; i < 100 && !running(); i++) await new Promise((r) => setTimeout(r, 100));
    t.true(running());
    child.kill('SIGINT');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    if (code === 'hung') {
      child.kill('SIGKILL');
      for (const pid of sleeps()) process.kill(pid, 'SIGKILL');
      t.fail('strata and its build were still running 20 s after the SIGINT');
      return;
    }
    t.is(code, 1);
    t.regex(stderr, /^error: recipe slow: build step 2 of 2 \("busybox sleep \d+"\) failed with exit code 130|^error: recipe slow: its build was stopped by signal 2/m);
    t.false(running(), 'the build is gone');
    t.deepEqual(storedOutputs(p.cache), []);
  });
}

test('a recipe under another prefix is seen read-only at its prefix by the recipes that depend on it, and its bin goes on PATH', async (t) => {
  const p = await project();
  writeRecipes(p, {
    tools: { prefix: '/opt/tools', build: ['mkdir -p $PREFIX/bin', "printf '#!/bin/sh\\necho tool says $1\\n' > $PREFIX/bin/tool && chmod 755 $PREFIX/bin/tool"] },
    user: {
      depends: ['recipe:tools'],
      build: ['mkdir -p $PREFIX/share', '/opt/tools/bin/tool hi > $PREFIX/share/out', 'if touch /opt/tools/x 2>/dev/null; then echo writable >> $PREFIX/share/out; else echo read-only >> $PREFIX/share/out; fi'],
    },
  });
  await ok(p, ['realise']);
  t.is(await inEnv(p, 'cat /usr/local/share/out; tool there; echo "$PATH"'), 'tool says hi\nread-only\ntool says there\n/opt/tools/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
});
