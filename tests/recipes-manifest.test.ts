/** `[recipes.NAME]` in strata.toml: what parses with what meaning, and every mistake at its line and column. */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { canonicalRecipe, parseRecipeRequest } from '../recipes/recipe.ts';
import { StrataError } from '../errors.ts';

const HEAD = `[project]
name = "x"

[channels.stable]
suite = "trixie"

[channels.current]
suite = "forky"

[packages]
hello = "*"
`;

const SHA = 'a'.repeat(64);
const REV = '0123456789abcdef0123456789abcdef01234567';

function write(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'strata-recipes-manifest-')), 'strata.toml');
  writeFileSync(f, text);
  return f;
}

test("the issue's recipe parses with its meaning", (t) => {
  const m = loadManifest(
    write(`${HEAD}
[recipes.magma]
version = "2.9.0"
source = { url = "mirror://stable/pool/contrib/m/magma/magma_2.9.0+ds.orig.tar.xz", sha256 = "${SHA.toUpperCase()}" }
sources = [ { git = "../extra", rev = "${REV}", dest = "extra" }, { url = "https://example.invalid/p.patch", sha256 = "${SHA}" } ]
build-depends = ["cmake", "gfortran >= 12", "nvidia-cuda-toolkit (>= 12.4) @current", { name = "intel-mkl", version = "2020.4", channel = "current" }]
depends = ["libgomp1", "recipe:base"]
env = { MKLROOT = "/usr" }
build = [
  "cmake -S . -B build -DCMAKE_INSTALL_PREFIX=$PREFIX",
  "cmake --build build -j$JOBS",
]

[recipes.base]
version = "1"
build = "true"
prefix = "/opt/base"
`),
  );
  t.deepEqual(
    m.recipes!.map((r) => r.name),
    ['base', 'magma'],
  );
  const r = m.recipes![1]!;
  t.is(r.kind, 'build');
  t.is(r.prefix, '/usr/local');
  t.deepEqual(r.sources, [
    { url: 'mirror://stable/pool/contrib/m/magma/magma_2.9.0+ds.orig.tar.xz', sha256: SHA },
    { git: '../extra', rev: REV, dest: 'extra' },
    { url: 'https://example.invalid/p.patch', sha256: SHA },
  ]);
  t.deepEqual(r.buildDepends, [
    { package: { name: 'cmake' } },
    { package: { name: 'gfortran', constraint: { op: '>=', version: '12' } } },
    { package: { name: 'nvidia-cuda-toolkit', constraint: { op: '>=', version: '12.4' }, channel: 'current' } },
    { package: { name: 'intel-mkl', constraint: { op: '=', version: '2020.4' }, channel: 'current' } },
  ]);
  t.deepEqual(r.depends, [{ package: { name: 'libgomp1' } }, { recipe: 'base' }]);
  t.deepEqual(r.env, { MKLROOT: '/usr' });
  t.deepEqual(m.recipes![0]!.build, ['true']);
  t.is(m.recipes![0]!.prefix, '/opt/base');
});

test('the canonical text of a recipe does not depend on how its requests and env are written', (t) => {
  const a = loadManifest(write(`${HEAD}\n[recipes.r]\nversion = "1"\nbuild-depends = ["gcc >= 12", "make@current"]\nenv = { B = "2", A = "1" }\nbuild = ["true"]\n`)).recipes![0]!;
  const b = loadManifest(write(`${HEAD}\n[recipes.r]\nbuild = ["true"]\nenv = { A = "1", B = "2" }\nbuild-depends = [{ name = "gcc", version = ">= 12" }, "make (  ) @current"]\nversion = "1"\n`.replace('"make (  ) @current"', '{ name = "make", channel = "current" }'))).recipes![0]!;
  t.is(canonicalRecipe(a), canonicalRecipe(b));
  t.deepEqual(parseRecipeRequest('gcc (>= 12) @current'), { package: { name: 'gcc', constraint: { op: '>=', version: '12' }, channel: 'current' } });
});

function fails(t: import('ava').ExecutionContext, body: string, where: string, pattern: RegExp): void {
  const f = write(`${HEAD}\n${body}`);
  const e = t.throws(() => loadManifest(f), { instanceOf: StrataError })!;
  t.is(e.code, 'E_MANIFEST');
  t.true(e.message.startsWith(`${f}:${where}: `), `${e.message} (expected at ${where})`);
  t.regex(e.message, pattern);
}

test("the issue's pip recipe parses: pip in its build environment, python3 in its depends, strata's install step", (t) => {
  const m = loadManifest(
    write(`${HEAD}
[recipes.skcuda]
kind = "pip"                        # Python packages from a package index, pinned by hash
version = "0.5.3"
index = "https://example.invalid/simple"
requirements = ["scikit-cuda == 0.5.3"]
depends = ["recipe:magma"]

[recipes.magma]
version = "2.9.0"
build = "true"
`),
  );
  const r = m.recipes!.find((x) => x.name === 'skcuda')!;
  t.is(r.kind, 'pip');
  t.is(r.index, 'https://example.invalid/simple');
  t.deepEqual(r.requirements, ['scikit-cuda == 0.5.3']);
  t.deepEqual(r.buildDepends, [{ package: { name: 'python3-pip' } }]);
  t.deepEqual(r.depends, [{ package: { name: 'python3' } }, { recipe: 'magma' }]);
  t.is(r.prefix, '/usr/local');
  t.is(r.build.length, 1);
  t.regex(r.build[0]!, /^python3 -m pip install .*--no-index --no-deps --require-hashes .*-r \/build\/src\/strata-requirements\.txt$/);
  t.deepEqual(m.recipes!.map((x) => x.name), ['magma', 'skcuda'].sort());
  // The requirements are part of the recipe's text (so lock --check sees a change), a build recipe's text is as before.
  const other = loadManifest(write(`${HEAD}\n[recipes.skcuda]\nkind = "pip"\nversion = "0.5.3"\nrequirements = ["scikit-cuda == 0.5.2"]\n`)).recipes![0]!;
  t.not(canonicalRecipe(r), canonicalRecipe({ ...other, depends: r.depends, index: r.index! }));
  t.is(canonicalRecipe({ ...r, requirements: ['scikit-cuda == 0.5.3'] }), canonicalRecipe(r));
});

// The manifest's head is 11 lines, then a blank line: a recipe's table starts on line 13.
test('recipe mistakes are reported at their line and column', (t) => {
  fails(t, '[recipes.r]\nversion = "1"\nbuild = ["true"]\nbiuld = ["x"]\n', '16:1', /unknown key "biuld" in \[recipes\.r\]/);
  fails(t, '[recipes.r]\nversion = 1\nbuild = ["true"]\n', '14:1', /recipes\.r\.version must be a string, not number 1/);
  fails(t, '[recipes.r]\nversion = "1"\nbuild = [1]\n', '15:1', /recipes\.r\.build must be a string or an array of strings/);
  fails(t, '[recipes.r]\nversion = "1"\nsource = { url = "https://example.invalid/a.tar.gz" }\nbuild = ["true"]\n', '15:1', /recipes\.r\.source: a url source needs its sha256/);
  fails(t, `[recipes.r]\nversion = "1"\nsource = { url = "https://example.invalid/a.tar.gz", sha256 = "abc" }\nbuild = ["true"]\n`, '15:54', /sha256 "abc" is not 64 hex digits/);
  fails(t, `[recipes.r]\nversion = "1"\nsource = { git = "https://example.invalid/r.git", rev = "main" }\nbuild = ["true"]\n`, '15:51', /rev "main" is not a full commit id/);
  fails(t, `[recipes.r]\nversion = "1"\nsources = [\n  { url = "https://example.invalid/a", sha256 = "${SHA}" },\n  { git = "r", rev = "${REV}", dset = "x" },\n]\nbuild = ["true"]\n`, '17:66', /recipes\.r\.sources\[1\]: unknown key "dset"/);
  fails(t, `[recipes.r]\nversion = "1"\nsource = { url = "ftp://example.invalid/a", sha256 = "${SHA}" }\nbuild = ["true"]\n`, '15:12', /is not an http\(s\):\/\/, file:\/\/ or mirror:\/\/CHANNEL\/PATH URL/);
  fails(t, `[recipes.r]\nversion = "1"\nsource = { url = "mirror://nochannel/a", sha256 = "${SHA}" }\nbuild = ["true"]\n`, '15:12', /names channel "nochannel", which is not declared/);
  fails(t, `[recipes.r]\nversion = "1"\nsource = { url = "https://example.invalid/a", sha256 = "${SHA}", dest = "../up" }\nbuild = ["true"]\n`, '15:124', /dest "\.\.\/up" must not have empty, "\." or "\.\." parts/);
  fails(t, '[recipes.r]\nversion = "1"\nbuild-depends = ["gcc > 12"]\nbuild = ["true"]\n', '15:1', /"gcc > 12": ">" is ambiguous/);
  fails(t, '[recipes.r]\nversion = "1"\nbuild-depends = ["gcc @nowhere"]\nbuild = ["true"]\n', '15:1', /asks for channel "nowhere", which is not declared/);
  fails(t, '[recipes.r]\nversion = "1"\nenv = { PREFIX = "/x" }\nbuild = ["true"]\n', '15:9', /PREFIX is set by the build sandbox itself/);
  fails(t, '[recipes.r]\nversion = "1"\nprefix = "/usr"\nbuild = ["true"]\n', '15:1', /prefix "\/usr" is a top-level directory/);
  fails(t, '[recipes.r]\nversion = "1"\nprefix = "/tmp/x"\nbuild = ["true"]\n', '15:1', /lies under \/tmp, which the build sandbox provides itself/);
  fails(t, '[recipes.r]\nversion = "v1"\nbuild = ["true"]\n', '14:1', /version "v1" is not a valid Debian version/);
  fails(t, '[recipes.r]\nbuild = ["true"]\n', '13:1', /recipe "r" needs a version/);
  fails(t, '[recipes.r]\nversion = "1"\n', '13:1', /recipe "r" needs build = /);
  fails(t, '[recipes.R]\nversion = "1"\nbuild = ["true"]\n', '13:1', /recipe name "R" must be lower-case/);
  fails(t, '[recipes.r]\nversion = "1"\nkind = "pip"\nrequirements = ["a"]\nbuild = ["true"]\n', '17:1', /unknown key "build" in \[recipes\.r\]/);
  fails(t, '[recipes.r]\nversion = "1"\nkind = "pip"\n', '13:1', /recipe "r" \(kind = "pip"\) needs requirements = /);
  fails(t, '[recipes.r]\nversion = "1"\nkind = "pip"\nrequirements = ["a", "-e ."]\n', '16:1', /recipes\.r\.requirements\[1\] "-e \." is a pip option, not a requirement/);
  fails(t, '[recipes.r]\nversion = "1"\nkind = "pip"\nindex = "file:///srv/simple"\nrequirements = ["a"]\n', '16:1', /recipes\.r\.index "file:\/\/\/srv\/simple" is not an http\(s\):\/\/ URL/);
  fails(t, '[recipes.r]\nversion = "1"\nkind = "conda"\nbuild = ["true"]\n', '15:1', /kind must be "build" or "pip", not "conda"/);
  fails(t, '[recipes.a]\nversion = "1"\ndepends = ["recipe:b"]\nbuild = ["true"]\n\n[recipes.b]\nversion = "1"\nbuild-depends = ["recipe:c"]\nbuild = ["true"]\n\n[recipes.c]\nversion = "1"\ndepends = ["recipe:a"]\nbuild = ["true"]\n', '13:1', /recipes depend on each other in a cycle: a -> b -> c -> a$/);
  fails(t, '[recipes.a]\nversion = "1"\nbuild-depends = ["recipe:zz"]\nbuild = ["true"]\n', '15:1', /recipe "a" depends on recipe:zz, which strata.toml does not define/);
});
