/**
 * The image plan: which locked packages go into which layer, in which order. A pure function of the lock.
 *
 * Rule: packages are grouped by Debian source package (binaries built together change together). The groups, in
 * source-name order, are cut into at most `maxLayers` layers by content-defined boundaries: a layer ends after a
 * group whose source-name hash falls on a boundary, or after a group that is large on its own (while the groups
 * fit, each is a layer of its own). What a layer holds depends only on names (and coarse sizes), so a version bump
 * changes one layer, and adding or removing a package changes the one layer it joins or leaves; a registry then
 * receives only that layer. The layers are then ordered by stability, most stable lowest: a group's *height* is
 * the length of the longest dependency chain below it (libc6 has height 0; what depends on it sits higher), a
 * layer's is its lowest group's, ties broken by source name.
 */
import { createHash } from 'node:crypto';
import { Graph, alg } from '@dagrejs/graphlib';
import { cmp } from '../util/order.ts';
import type { LockedPackage, Lockfile } from '../model.ts';

export interface LayerGroup {
  /** Stable identifier of the layer: the sources it holds, joined (shortened when long). */
  label: string;
  sources: string[];
  packages: LockedPackage[];
  bytes: number;
}

export const MAX_PACKAGE_LAYERS = 96;
/** A source group this large gets a layer of its own. */
const LARGE_GROUP = 64 * 1024 * 1024;


function labelOf(sources: string[]): string {
  return sources.length <= 3 ? sources.join(' ') : `${sources.slice(0, 3).join(' ')} and ${sources.length - 3} more`;
}

function nameHash(s: string): number {
  return createHash('sha256').update(s).digest().readUInt32BE(0);
}

export function planLayers(lock: Lockfile, maxLayers = MAX_PACKAGE_LAYERS): LayerGroup[] {
  const bySource = new Map<string, LockedPackage[]>();
  const sourceOf = new Map<string, string>();
  for (const p of lock.packages) {
    if (!bySource.has(p.source)) bySource.set(p.source, []);
    bySource.get(p.source)!.push(p);
    sourceOf.set(p.name, p.source);
  }
  // Height over the source graph, with cycles condensed.
  const g = new Graph({ directed: true });
  for (const s of bySource.keys()) g.setNode(s);
  for (const p of lock.packages) {
    for (const d of p.depends) {
      const ds = sourceOf.get(d);
      if (ds !== undefined && ds !== p.source) g.setEdge(p.source, ds);
    }
  }
  const sccs: string[][] = alg.tarjan(g);
  const sccOf = new Map<string, number>();
  sccs.forEach((c, i) => c.forEach((s) => sccOf.set(s, i)));
  const memo = new Map<number, number>();
  const heightOf = (i: number): number => {
    const known = memo.get(i);
    if (known !== undefined) return known;
    memo.set(i, 0); // guards re-entry; the condensation is acyclic
    let h = 0;
    for (const s of sccs[i]!) {
      for (const d of (g.successors(s) ?? []) as string[]) {
        const j = sccOf.get(d)!;
        if (j !== i) h = Math.max(h, heightOf(j) + 1);
      }
    }
    memo.set(i, h);
    return h;
  };
  const groups: Group[] = [...bySource.entries()].map(([source, packages]) => ({
    source,
    packages: packages.sort((a, b) => cmp(a.name, b.name)),
    bytes: packages.reduce((n, p) => n + p.size, 0),
    height: heightOf(sccOf.get(source)!),
  }));

  return orderByHeight(cutByName(groups, maxLayers));
}

interface Group {
  source: string;
  packages: LockedPackage[];
  bytes: number;
  height: number;
}

function layerOf(members: Group[]): LayerGroup & { height: number } {
  const sources = members.map((x) => x.source);
  return {
    label: labelOf(sources),
    sources,
    packages: members.flatMap((x) => x.packages),
    bytes: members.reduce((n, x) => n + x.bytes, 0),
    height: Math.min(...members.map((x) => x.height)),
  };
}

/**
 * The modulus of the content-defined boundaries: 1 (every source group a layer) while the groups fit, else the
 * smallest power of two that makes about three quarters of `maxLayers`. Powers of two nest (a boundary at 2m is one
 * at m), so crossing a step merges neighbouring layers pairwise instead of moving every boundary.
 */
function boundaryModulus(groups: number, maxLayers: number): number {
  if (groups <= maxLayers) return 1;
  let m = 2;
  while (groups / m > (maxLayers * 3) / 4) m *= 2;
  return m;
}

/**
 * Cuts the groups, in source-name order, into layers: a layer ends after a group whose source-name hash falls on a
 * boundary, and a large group stands alone. The order and the boundaries depend on names (and coarse sizes) alone,
 * not on the dependency graph, so adding or removing a package changes the layer it joins or leaves and no other;
 * a new dependency deep below does not reshuffle what lies above it.
 */
function cutByName(groups: Group[], maxLayers: number): (LayerGroup & { height: number })[] {
  const byName = [...groups].sort((a, b) => cmp(a.source, b.source));
  const modulus = boundaryModulus(byName.length, maxLayers);
  const chunks: Group[][] = [];
  let current: Group[] = [];
  const flush = () => {
    if (current.length > 0) chunks.push(current);
    current = [];
  };
  for (const grp of byName) {
    if (grp.bytes >= LARGE_GROUP) flush();
    current.push(grp);
    if (grp.bytes >= LARGE_GROUP || nameHash(grp.source) % modulus === 0) flush();
  }
  flush();
  // Too many boundaries (hash variance): merge the smallest adjacent pairs (in name order) until within the limit.
  while (chunks.length > maxLayers) {
    let best = 0;
    const size = (c: Group[]) => c.reduce((n, x) => n + x.bytes, 0);
    for (let i = 1; i < chunks.length - 1; i++) {
      if (size(chunks[i]!) + size(chunks[i + 1]!) < size(chunks[best]!) + size(chunks[best + 1]!)) best = i;
    }
    chunks.splice(best, 2, [...chunks[best]!, ...chunks[best + 1]!]);
  }
  return chunks.map(layerOf);
}

/** The layers in image order: most depended-on lowest (a layer sits at its lowest group's height), then by label. */
function orderByHeight(layers: (LayerGroup & { height: number })[]): LayerGroup[] {
  return layers.sort((a, b) => a.height - b.height || cmp(a.sources[0]!, b.sources[0]!)).map(({ height: _h, ...l }) => l);
}

