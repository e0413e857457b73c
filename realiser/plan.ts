/**
 * The image plan: which locked packages go into which layer, in which order. A pure function of the lock.
 *
 * Rule: packages are grouped by Debian source package (binaries built together change together). Groups are
 * ordered by stability, most stable lowest: a group's *height* is the length of the longest dependency chain below
 * it (libc6 has height 0; what depends on it sits higher), ties broken by source name. Groups are then cut into at
 * most `maxLayers` layers by content-defined boundaries: a layer ends after a group whose source-name hash falls on
 * a boundary, or after a group that is large on its own. Boundaries depend only on names (and coarse sizes), so a
 * version bump changes one layer, and adding or removing a package moves at most one boundary; Docker then
 * re-applies only the changed layer and those above it.
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
  const groups = [...bySource.entries()].map(([source, packages]) => ({
    source,
    packages: packages.sort((a, b) => cmp(a.name, b.name)),
    bytes: packages.reduce((n, p) => n + p.size, 0),
    height: heightOf(sccOf.get(source)!),
  }));
  groups.sort((a, b) => a.height - b.height || cmp(a.source, b.source));

  const modulus = Math.max(1, Math.ceil(groups.length / maxLayers));
  const layers: LayerGroup[] = [];
  let current: typeof groups = [];
  const flush = () => {
    if (current.length === 0) return;
    const sources = current.map((x) => x.source);
    layers.push({
      label: labelOf(sources),
      sources,
      packages: current.flatMap((x) => x.packages),
      bytes: current.reduce((n, x) => n + x.bytes, 0),
    });
    current = [];
  };
  for (const grp of groups) {
    if (grp.bytes >= LARGE_GROUP) flush();
    current.push(grp);
    if (grp.bytes >= LARGE_GROUP || nameHash(grp.source) % modulus === 0) flush();
  }
  flush();
  // Too many boundaries (hash variance): merge the smallest adjacent pairs until within the limit.
  while (layers.length > maxLayers) {
    let best = 0;
    for (let i = 1; i < layers.length - 1; i++) {
      if (layers[i]!.bytes + layers[i + 1]!.bytes < layers[best]!.bytes + layers[best + 1]!.bytes) best = i;
    }
    const a = layers[best]!;
    const b = layers[best + 1]!;
    const sources = [...a.sources, ...b.sources];
    layers.splice(best, 2, {
      label: labelOf(sources),
      sources,
      packages: [...a.packages, ...b.packages],
      bytes: a.bytes + b.bytes,
    });
  }
  return layers;
}
