#!/usr/bin/env node
/**
 * Checks the shape of the code, as the README's Architecture section states it, from the source alone:
 * - the import graph of the source modules (tests and benchmarks left out) has no cycle;
 * - no module of commands/ imports another module of commands/;
 * - run/ imports nothing from realiser/; lock/ imports nothing from channels/, resolver/, realiser/, run/, engine/;
 * - nothing below engine/ imports engine/ or commands/;
 * - nothing outside store/ builds a path under the store root (`join(...store.root...)`, `storeRoot`) or writes
 *   into the store's directories by name;
 * - the small shared helpers (string order, sha256 of a buffer, signal names, the tar header type, ...) are each
 *   defined in one module, and no other module defines its own sha256-of-a-buffer helper.
 * Prints each violation and exits 1 when there is any; prints a one-line summary and exits 0 otherwise.
 *
 *   node scripts/check-architecture.ts
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { Graph, alg } from '@dagrejs/graphlib';

const root = resolve(import.meta.dirname, '..');
const SKIP = new Set(['node_modules', 'tests', 'bench', 'scripts', 'examples', '.git', 'types']);

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name) || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(relative(root, p));
  }
  return out;
}

const files = sources(root).sort();
const graph = new Graph();
const problems: string[] = [];
const top = (f: string) => (f.includes('/') ? f.split('/')[0]! : f);
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

for (const f of files) {
  graph.setNode(f);
  const text = readFileSync(join(root, f), 'utf8');
  for (const m of text.matchAll(IMPORT)) {
    const target = relative(root, resolve(root, dirname(f), (m[1] ?? m[2])!));
    graph.setEdge(f, target);
    const [from, to] = [top(f), top(target)];
    if (from === 'commands' && to === 'commands') problems.push(`${f} imports another command: ${target}`);
    if (from === 'run' && to === 'realiser') problems.push(`${f} (run/) imports the realiser: ${target}`);
    if (from === 'lock' && ['channels', 'resolver', 'realiser', 'run', 'engine'].includes(to)) problems.push(`${f} (lock/) imports upward: ${target}`);
    if (!['commands', 'engine', 'cli.ts'].includes(from) && (to === 'engine' || to === 'commands')) problems.push(`${f} imports ${to}/: ${target}`);
  }
  if (top(f) !== 'store') {
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      if (/\bjoin\([^)]*\.root\b/.test(line) && /store/i.test(line)) problems.push(`${f}:${i + 1} builds a path under the store root: ${line.trim()}`);
      if (/\bstoreRoot\b/.test(line)) problems.push(`${f}:${i + 1} handles the store root by hand: ${line.trim()}`);
      if (/['"`](?:blobs\/sha256|unpacked|layers|rootfs|channels|indexes)\/?['"`]/.test(line) && /\bjoin\(/.test(line)) problems.push(`${f}:${i + 1} names a store directory: ${line.trim()}`);
    });
  }
}
/** Helpers the codebase shares: each must be defined in exactly one module. */
const SHARED = ['reasonOf', 'FORWARDED', 'cmp', 'parentOf', 'TarHeader', 'sha256Hex', 'sha256Digest'];
const definedIn = new Map<string, string[]>(SHARED.map((n) => [n, []]));
for (const f of files) {
  const text = readFileSync(join(root, f), 'utf8');
  for (const n of SHARED) {
    if (new RegExp(`^(?:export )?(?:async )?(?:function|const|let|interface|type) ${n}\\b`, 'm').test(text)) definedIn.get(n)!.push(f);
  }
  // A module of its own hashing a whole buffer into a digest string belongs in util/bytes.ts.
  const own = /^(?:export )?(?:function|const) \w*(?:sha256|digest)\w*\s*(?:=\s*)?\([^)]*\)[^\n]*\n?[^\n]*createHash\('sha256'\)\.update\([^)]*\)\.digest\('hex'\)/im;
  if (f !== 'util/bytes.ts' && own.test(text)) problems.push(`${f} defines its own sha256 helper: use util/bytes.ts`);
}
for (const [n, where] of definedIn) if (where.length !== 1) problems.push(`${n} is defined in ${where.length} modules (${where.join(', ') || 'none'}): define it once`);
for (const cycle of alg.findCycles(graph)) problems.push(`import cycle: ${cycle.join(' -> ')}`);

if (problems.length > 0) {
  for (const p of problems) process.stderr.write(`${p}\n`);
  process.stderr.write(`check-architecture: ${problems.length} problem(s)\n`);
  process.exit(1);
}
const edges = graph.edges().filter((e) => top(e.v) !== top(e.w)).map((e) => `${top(e.v)}>${top(e.w)}`);
process.stdout.write(`check-architecture: ${files.length} modules, ${graph.edgeCount()} imports (${new Set(edges).size} between folders), no cycle, no forbidden edge, no store path built outside store/, each shared helper defined once\n`);
