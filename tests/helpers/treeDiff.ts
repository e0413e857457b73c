/**
 * Compares two root filesystems path by path, as the installed-parity oracle needs: what is present in one and not
 * the other, file types, modes, owners, symlink targets, and the contents of regular files. Paths matching
 * `ignore` are skipped with everything below them; paths matching `presenceOnly` are compared by type alone
 * (bytecode, whose bytes depend on the invalidation mode); regular files matching `normalise.paths` are compared by
 * `normalise.bytes` of their contents (a field that records when, or over which tree, a tool made the file).
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, createReadStream, type Stats } from 'node:fs';
import { join } from 'node:path';

export interface TreeDifference {
  path: string;
  kind: 'only-a' | 'only-b' | 'type' | 'mode' | 'owner' | 'target' | 'content';
  detail: string;
}

const typeOf = (s: Stats) => (s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : s.isFile() ? 'file' : s.isCharacterDevice() ? 'char' : s.isBlockDevice() ? 'block' : s.isFIFO() ? 'fifo' : 'other');

function walk(root: string, ignore: RegExp, out: Map<string, Stats>, rel = ''): void {
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel === '' ? name : `${rel}/${name}`;
    if (ignore.test(p)) continue;
    const st = lstatSync(join(root, p));
    out.set(p, st);
    if (st.isDirectory()) walk(root, ignore, out, p);
  }
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The differences between trees `a` and `b`, sorted by path. */
export async function diffTrees(a: string, b: string, opts: { ignore: RegExp; presenceOnly: RegExp; normalise?: { paths: RegExp; bytes: (path: string, content: Buffer) => Buffer } }): Promise<TreeDifference[]> {
  const ta = new Map<string, Stats>();
  const tb = new Map<string, Stats>();
  walk(a, opts.ignore, ta);
  walk(b, opts.ignore, tb);
  const out: TreeDifference[] = [];
  // A path missing on one side is reported once, not with everything below it.
  const missingUnder = (p: string, other: Map<string, Stats>) => {
    const i = p.lastIndexOf('/');
    return i > 0 && !other.has(p.slice(0, i));
  };
  for (const [p, sa] of ta) {
    const sb = tb.get(p);
    if (!sb) {
      if (!missingUnder(p, tb)) out.push({ path: p, kind: 'only-a', detail: typeOf(sa) });
      continue;
    }
    if (typeOf(sa) !== typeOf(sb)) {
      out.push({ path: p, kind: 'type', detail: `${typeOf(sa)} vs ${typeOf(sb)}` });
      continue;
    }
    if (opts.presenceOnly.test(p)) continue;
    if ((sa.mode & 0o7777) !== (sb.mode & 0o7777) && !sa.isSymbolicLink()) out.push({ path: p, kind: 'mode', detail: `${(sa.mode & 0o7777).toString(8)} vs ${(sb.mode & 0o7777).toString(8)}` });
    if (sa.uid !== sb.uid || sa.gid !== sb.gid) out.push({ path: p, kind: 'owner', detail: `${sa.uid}:${sa.gid} vs ${sb.uid}:${sb.gid}` });
    if (sa.isSymbolicLink()) {
      const la = readlinkSync(join(a, p));
      const lb = readlinkSync(join(b, p));
      if (la !== lb) out.push({ path: p, kind: 'target', detail: `${la} vs ${lb}` });
    } else if (sa.isFile()) {
      const n = opts.normalise;
      if (n && n.paths.test(p)) {
        if (!n.bytes(p, readFileSync(join(a, p))).equals(n.bytes(p, readFileSync(join(b, p))))) out.push({ path: p, kind: 'content', detail: `${sa.size} vs ${sb.size} bytes (normalised)` });
      } else if (sa.size !== sb.size || (await sha256(join(a, p))) !== (await sha256(join(b, p)))) out.push({ path: p, kind: 'content', detail: `${sa.size} vs ${sb.size} bytes` });
    }
  }
  for (const [p, sb] of tb) if (!ta.has(p) && !missingUnder(p, ta)) out.push({ path: p, kind: 'only-b', detail: typeOf(sb) });
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}
