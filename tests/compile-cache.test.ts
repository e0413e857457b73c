/**
 * bin/strata names Node's compile cache before Node starts (so that cli.ts itself is cached and a warm command never
 * loads the TypeScript stripper), in the directory store/cacheDir.ts chooses, and nothing strata starts inherits it.
 * Node's own trace (NODE_DEBUG_NATIVE=COMPILE_CACHE) says which directory it used and what it read from it.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileCacheDir } from '../store/cacheDir.ts';
import { STRATA } from './helpers/project.ts';

const work = mkdtempSync(join(tmpdir(), 'strata-compile-cache-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

/** Runs bin/strata with exactly `env` (and PATH), Node's compile cache traced; the directory it used, and its trace. */
function traced(args: string[], env: NodeJS.ProcessEnv): { dir: string | undefined; trace: string; stdout: string; code: number | null } {
  const r = spawnSync(STRATA, args, { cwd: work, env: { PATH: process.env.PATH, NODE_DEBUG_NATIVE: 'COMPILE_CACHE', ...env }, encoding: 'utf8' });
  const dir = /\[compile cache\] resolved path (\S+) \+ \S+ -> /.exec(r.stderr)?.[1];
  return { dir, trace: r.stderr, stdout: r.stdout, code: r.status };
}

test('bin/strata uses the compile cache store/cacheDir.ts names, for every way of naming the store', (t) => {
  const home = join(work, 'home');
  const xdg = join(work, 'xdg');
  const explicit = join(work, 'explicit');
  for (const d of [join(home, '.cache', 'strata'), join(xdg, 'strata'), explicit]) mkdirSync(d, { recursive: true });
  // compileCacheDir takes HOME from this process (os.homedir()): the cases naming the store by HOME say where it is.
  const inHome = join(home, '.cache', 'strata', 'compile-cache');
  const cases: [string, NodeJS.ProcessEnv, string | undefined][] = [
    ['HOME', { HOME: home }, inHome],
    ['XDG_CACHE_HOME', { HOME: home, XDG_CACHE_HOME: xdg }, compileCacheDir({ XDG_CACHE_HOME: xdg })],
    ['a relative XDG_CACHE_HOME is ignored', { HOME: home, XDG_CACHE_HOME: 'relative' }, inHome],
    ['STRATA_CACHE_DIR', { HOME: home, XDG_CACHE_HOME: xdg, STRATA_CACHE_DIR: explicit }, compileCacheDir({ STRATA_CACHE_DIR: explicit })],
  ];
  t.is(cases[1]![2], join(xdg, 'strata', 'compile-cache'));
  t.is(cases[3]![2], join(explicit, 'compile-cache'));
  for (const [what, env, expected] of cases) {
    const first = traced(['--version'], env);
    t.is(first.code, 0, `${what}: ${first.trace}`);
    t.is(first.dir, expected, what);
    // The second run reads cli.ts itself from the cache: the cache was named before Node started.
    const second = traced(['--version'], env);
    t.regex(second.trace, /reading cache from \S+ for StrippedTypeScript file:\/\/\S+\/cli\.ts\.\.\..*success/, what);
  }
});

test('no store yet: no compile cache is made, and none is named', (t) => {
  const home = join(work, 'bare-home');
  mkdirSync(home);
  const r = traced(['--version'], { HOME: home });
  t.is(r.code, 0, r.trace);
  t.is(r.dir, undefined);
});

test("a user's own NODE_COMPILE_CACHE is left alone", (t) => {
  const home = join(work, 'own-home');
  mkdirSync(join(home, '.cache', 'strata'), { recursive: true });
  const own = join(work, 'own-cache');
  const r = traced(['--version'], { HOME: home, NODE_COMPILE_CACHE: own });
  t.is(r.code, 0, r.trace);
  t.is(r.dir, own);
});
