/**
 * A recipe against the real Debian archive (skipped with a message when no mirror is reachable): gcc, make and
 * libc6-dev from trixie build a small shared C library and a program linked to it, from a tarball served on
 * loopback; the program then runs under `strata run`, finding the library through the image's LD_LIBRARY_PATH,
 * and dpkg in the image knows which entry owns it.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/project.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import { serveMirror } from './helpers/mirror.ts';

const FILES: Record<string, string> = {
  'greet.h': 'const char *greeting(void);\n',
  'greet.c': '#include "greet.h"\nconst char *greeting(void) { return "hello from libgreet " VERSION; }\n',
  'main.c': '#include <stdio.h>\n#include "greet.h"\nint main(void) { printf("%s, linked by strata\\n", greeting()); return 0; }\n',
  Makefile: [
    'VERSION = 1.0',
    'all: libgreet.so.1 hello',
    'libgreet.so.1: greet.c greet.h',
    '\t$(CC) -O2 -fPIC -shared -DVERSION=\'"$(VERSION)"\' -Wl,-soname,libgreet.so.1 -o $@ greet.c',
    'libgreet.so: libgreet.so.1',
    '\tln -sf libgreet.so.1 $@',
    'hello: main.c libgreet.so',
    '\t$(CC) -O2 -o $@ main.c -L. -lgreet',
    'install: all',
    '\tmkdir -p $(PREFIX)/lib $(PREFIX)/bin $(PREFIX)/include',
    '\tcp libgreet.so.1 $(PREFIX)/lib/ && ln -sf libgreet.so.1 $(PREFIX)/lib/libgreet.so',
    '\tcp greet.h $(PREFIX)/include/ && cp hello $(PREFIX)/bin/',
    '',
  ].join('\n'),
};

test('trixie gcc, make and libc6-dev build a C library and a program linked to it, which runs under strata run', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-recipe-c-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const served = join(dir, 'served');
  mkdirSync(join(dir, 'src/libgreet-1.0'), { recursive: true });
  mkdirSync(served);
  for (const [name, content] of Object.entries(FILES)) writeFileSync(join(dir, 'src/libgreet-1.0', name), content);
  execFileSync('tar', ['-C', join(dir, 'src'), '-czf', join(served, 'libgreet-1.0.tar.gz'), 'libgreet-1.0']);
  const sha256 = createHash('sha256').update(readFileSync(join(served, 'libgreet-1.0.tar.gz'))).digest('hex');
  const server = await serveMirror(served);
  try {
    const project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(
      join(project, 'strata.toml'),
      [
        '[project]',
        'name = "recipe-c"',
        'arch = "amd64"',
        '',
        '[channels.stable]',
        `url = "${m.url}"`,
        'suite = "trixie"',
        '',
        '[packages]',
        'dpkg = "*"',
        '',
        '[recipes.libgreet]',
        'version = "1.0"',
        `source = { url = "${server.url}/libgreet-1.0.tar.gz", sha256 = "${sha256}" }`,
        'build-depends = ["gcc", "make", "libc6-dev"]',
        'depends = ["libc6"]',
        'build = ["make -j$JOBS", "make install PREFIX=$PREFIX"]',
        '',
      ].join('\n'),
    );
    const env = { STRATA_CACHE_DIR: process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'cache') };
    const strata = (args: string[]) => runCli(args, { cwd: project, env, timeoutMs: 540_000 });
    const lock = await strata(['lock']);
    t.is(lock.code, 0, lock.stderr);
    const text = readFileSync(join(project, 'strata.lock'), 'utf8');
    const [envPart, recipePart] = text.split('[[recipe]]');
    t.notRegex(envPart!, /^name = "(gcc|gcc-14|cpp|binutils|make|libc6-dev)"$/m, 'the toolchain is build packages only');
    t.regex(recipePart!, /\[\[recipe\.build-package\]\]\nname = "gcc"/);
    const started = Date.now();
    const realise = await strata(['realise', '--locked']);
    t.is(realise.code, 0, realise.stderr);
    t.log(`realise with the build: ${((Date.now() - started) / 1000).toFixed(1)} s; ${/^built recipe .*$/m.exec(realise.stderr)?.[0]}`);
    const run = await strata(['run', '--backend', 'sandbox', '--locked', '--', 'hello']);
    t.is(run.code, 0, run.stderr);
    t.is(run.stdout, 'hello from libgreet 1.0, linked by strata\n');
    const owner = await strata(['run', '--backend', 'sandbox', '--locked', '--', 'sh', '-c', 'dpkg -S /usr/local/lib/libgreet.so.1; command -v gcc || echo "no gcc in the image"']);
    t.is(owner.code, 0, owner.stderr);
    t.is(owner.stdout, 'strata-recipe-libgreet: /usr/local/lib/libgreet.so.1\nno gcc in the image\n');
  } finally {
    await server.close();
  }
});
