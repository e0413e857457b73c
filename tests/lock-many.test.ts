/**
 * `strata lock` of large manifests of real names, through the real CLI on the real Debian archive: 100, 400 and
 * 1,000 names of trixie main (every k-th name of the amd64 index, sorted, so the sets are repeatable). Each must
 * lock (exit 0) or be proven unsatisfiable with an explanation (exit 4), in under two minutes and 2 GiB of peak
 * memory. Which of the two happens depends on the archive's current state; both are logged with the figures.
 */
import test from 'ava';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { loadChannel } from '../channels/channel.ts';
import { openStore } from '../store/store.ts';
import { quietReporter } from '../report/reporter.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import { STRATA } from './helpers/project.ts';

const SIZES = [100, 400, 1000];
const LIMIT_MS = 120_000;
const LIMIT_RSS = 2 * 1024 ** 3;

interface Measured {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
  /** Peak resident set size in bytes (the kernel's high-water mark, VmHWM, read while the CLI runs). */
  peakRss: number;
}

/** Runs the CLI, sampling its peak resident set from /proc (bin/strata execs node, so the pid stays the same). */
function measuredCli(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(STRATA, args, { cwd, env: { ...process.env, CI: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peakRss = 0;
    const sample = () => {
      try {
        const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakRss = Math.max(peakRss, Number(m[1]) * 1024);
      } catch {
        // gone already
      }
    };
    const timer = setInterval(sample, 50);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', () => sample());
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started, peakRss });
    });
  });
}

test('manifests of 100, 400 and 1,000 real trixie names lock or are explained, each in < 2 min and < 2 GiB', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-many-'));
  const cache = join(dir, 'cache');
  // The names, from the same index the CLI will read (it then finds it in the shared cache).
  const loaded = await loadChannel({ name: 'stable', urls: [m.url], suite: 'trixie', components: ['main'], trusted: false, checkValidUntil: true }, 0, 'amd64', await openStore(cache), quietReporter(), { offline: false });
  const names = loaded.indexes[0]!.names();
  t.true(names.length > 50_000, `${names.length} names`);
  for (const n of SIZES) {
    const k = Math.floor(names.length / n);
    const picked = Array.from({ length: n }, (_, i) => names[i * k]!);
    const project = join(dir, `n${n}`);
    const manifest = `[project]\nname = "many-${n}"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main"]\n\n[packages]\n${picked.map((p) => `"${p}" = "*"`).join('\n')}\n`;
    mkdirSync(project);
    writeFileSync(join(project, 'strata.toml'), manifest);
    const r = await measuredCli(['lock'], project, { STRATA_CACHE_DIR: cache });
    const rss = `${(r.peakRss / 1024 ** 2).toFixed(0)} MiB`;
    if (r.code === 0) {
      const lock = readFileSync(join(project, 'strata.lock'), 'utf8');
      const packages = (lock.match(/^\[\[package\]\]$/gm) ?? []).length;
      t.log(`${n} names: locked ${packages} packages in ${r.ms} ms, peak ${rss}`);
      t.true(packages >= n, `${packages} packages for ${n} names`);
    } else {
      t.is(r.code, 4, `${n} names: exit ${r.code}\n${r.stderr.slice(-3000)}`);
      t.false(existsSync(join(project, 'strata.lock')));
      t.regex(r.stderr, /satisfies the manifest; these requirements cannot all hold:\n {2}- the manifest asks for /);
      const reason = r.stderr.split('\n').filter((l) => l.startsWith('  - ')).length;
      t.log(`${n} names: unsatisfiable, explained in ${reason} requirements, in ${r.ms} ms, peak ${rss}`);
      t.log(r.stderr.trim().split('\n').slice(0, 12).join('\n'));
    }
    t.true(r.ms < LIMIT_MS, `${n} names took ${r.ms} ms`);
    t.true(r.peakRss > 0 && r.peakRss < LIMIT_RSS, `${n} names peaked at ${rss}`);
  }
});

