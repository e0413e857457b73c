/**
 * What `systemd-tmpfiles --create FILE...` makes when a postinst runs it on a first install (dh_installtmpfiles,
 * systemd's own), made without running it: the directories, symlinks and files of the persistent tree, and the
 * modes and owners it sets on ones the packages ship. Left out, as nothing of them lasts in an image or can be
 * written into a layer: the runtime trees (/run, /tmp, /dev, /proc, /sys), boot-only lines (`!`), lines that take a
 * credential (`^`), lines with specifiers (`%m`, `%b`: the machine and boot ids), and ACLs, extended attributes,
 * file attributes and cleaning (`a`, `A`, `t`, `T`, `h`, `H`, `x`, `X`, `r`, `R`, `e`).
 */
import { posix } from 'node:path';
import type { LayerEntry } from './layertar.ts';
import { withGiven } from '../util/given.ts';

/** An entry of the tree the lines act on: shipped by a package, or made earlier. */
export interface TreeNode {
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  mode: number;
  uid: number;
  gid: number;
  linkname?: string;
  /** A regular file's bytes, for `C` (copy). */
  read?: () => Buffer;
}

export interface TmpfilesLine {
  type: string;
  mods: string;
  path: string;
  mode?: string;
  user?: string;
  group?: string;
  arg?: string;
}

/** The lines of a tmpfiles.d file (tmpfiles.d(5)): `Type Path Mode User Group Age Argument`, `-` for unset. */
export function parseTmpfiles(text: string): TmpfilesLine[] {
  const out: TmpfilesLine[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)\s+(\S+)(?:\s+(\S+))?(?:\s+(\S+))?(?:\s+(\S+))?(?:\s+(\S+))?(?:\s+(.*))?$/.exec(line);
    if (!m) continue;
    const [, t, path, mode, user, group, , arg] = m;
    out.push(withGiven<TmpfilesLine>({ type: t![0]!, mods: t!.slice(1), path: path! }, { mode, user, group, arg }));
  }
  return out;
}

const RUNTIME = /^\/(run|tmp|dev|proc|sys)(\/|$)/;

export interface TmpfilesContext {
  /** The tree as it stands: what is at an absolute, merged-/usr path. */
  at(path: string): TreeNode | undefined;
  /** Records what a line made, so later lines (and later runs) see it. */
  put(path: string, node: TreeNode): void;
  uidOf(name: string): number | undefined;
  gidOf(name: string): number | undefined;
}

/**
 * Applies one `systemd-tmpfiles --create` run's lines (in their files' order) to the tree; returns the layer
 * entries of what it made or changed, parents first.
 */
export function applyTmpfiles(lines: TmpfilesLine[], ctx: TmpfilesContext): LayerEntry[] {
  const out = new Map<string, LayerEntry>();
  const seen = new Set<string>();
  const emit = (path: string, node: TreeNode) => {
    ctx.put(path, node);
    const rel = path.slice(1);
    if (node.type === 'dir') out.set(rel, { path: rel, type: 'dir', mode: node.mode, uid: node.uid, gid: node.gid });
    else if (node.type === 'symlink') out.set(rel, { path: rel, type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: node.linkname! });
    else if (node.type === 'file') {
      const content = node.read ? node.read() : Buffer.alloc(0);
      out.set(rel, { path: rel, type: 'file', mode: node.mode, uid: node.uid, gid: node.gid, size: content.length, content });
    }
  };
  /** Makes the missing parents of `path` (0755 root, as tmpfiles does), and says whether they are directories. */
  const parents = (path: string): boolean => {
    const dir = posix.dirname(path);
    if (dir === '/') return true;
    const n = ctx.at(dir);
    if (n) return n.type === 'dir';
    if (!parents(dir)) return false;
    emit(dir, { type: 'dir', mode: 0o755, uid: 0, gid: 0 });
    return true;
  };
  const owner = (l: TmpfilesLine, existing: TreeNode | undefined): { uid: number; gid: number } | undefined => {
    const pick = (v: string | undefined, keep: number | undefined, lookup: (n: string) => number | undefined) => {
      if (v === undefined) return keep ?? 0;
      const onCreate = v.startsWith(':');
      const name = onCreate ? v.slice(1) : v;
      if (onCreate && keep !== undefined) return keep;
      return lookup(name);
    };
    const uid = pick(l.user, existing?.uid, ctx.uidOf);
    const gid = pick(l.group, existing?.gid, ctx.gidOf);
    return uid === undefined || gid === undefined ? undefined : { uid, gid };
  };
  const modeOf = (l: TmpfilesLine, existing: TreeNode | undefined, fallback: number): number => {
    if (l.mode === undefined) return existing?.mode ?? fallback;
    let m = l.mode;
    const onCreate = m.startsWith(':');
    if (onCreate) {
      if (existing) return existing.mode;
      m = m.slice(1);
    }
    if (m.startsWith('~')) m = m.slice(1);
    return /^[0-7]{3,4}$/.test(m) ? parseInt(m, 8) : (existing?.mode ?? fallback);
  };
  for (const l of lines) {
    if (l.mods.includes('!') || l.mods.includes('^')) continue;
    if (l.path.includes('%') || (l.arg ?? '').includes('%') || !l.path.startsWith('/')) continue;
    const path = posix.normalize(l.path).replace(/\/+$/, '') || '/';
    if (RUNTIME.test(path)) continue;
    const key = `${'dDvqQLfFC'.includes(l.type) ? 'create' : l.type} ${path}`;
    if (seen.has(key)) continue; // the first line for a path wins
    seen.add(key);
    const existing = ctx.at(path);
    switch (l.type) {
      case 'd':
      case 'D':
      case 'v':
      case 'q':
      case 'Q': {
        if (existing && existing.type !== 'dir') break;
        if (!existing && !parents(path)) break;
        const o = owner(l, existing);
        if (!o) break;
        const mode = modeOf(l, existing, 0o755);
        if (existing && existing.mode === mode && existing.uid === o.uid && existing.gid === o.gid) break;
        emit(path, { type: 'dir', mode, ...o });
        break;
      }
      case 'L': {
        const target = l.arg ?? `/usr/share/factory${path}`;
        if (existing && !(l.mods.includes('+') && existing.type !== 'dir')) break;
        if (existing?.type === 'symlink' && existing.linkname === target) break;
        if (!existing && !parents(path)) break;
        emit(path, { type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: target });
        break;
      }
      case 'f':
      case 'F': {
        const plus = l.type === 'F' || l.mods.includes('+');
        if (existing && (existing.type !== 'file' || !plus)) break;
        if (!existing && !parents(path)) break;
        const o = owner(l, existing);
        if (!o) break;
        const content = Buffer.from(l.arg ?? '');
        emit(path, { type: 'file', mode: modeOf(l, undefined, 0o644), ...o, read: () => content });
        break;
      }
      case 'C': {
        if (existing) break;
        const from = ctx.at(l.arg ?? `/usr/share/factory${path}`);
        if (!from || from.type !== 'file' || !from.read || !parents(path)) break;
        const o = owner(l, undefined);
        if (!o) break;
        emit(path, { type: 'file', mode: modeOf(l, undefined, from.mode), ...o, read: from.read });
        break;
      }
      case 'z': {
        if (!existing || existing.type === 'symlink') break;
        const o = owner(l, existing);
        if (!o) break;
        const mode = modeOf(l, existing, existing.mode);
        if (existing.mode === mode && existing.uid === o.uid && existing.gid === o.gid) break;
        emit(path, { ...existing, mode, ...o });
        break;
      }
      default:
        // Z (recursive adjustment), w (writes to a file), ACLs, attributes, cleaning, devices: not made.
        break;
    }
  }
  return [...out.values()];
}
