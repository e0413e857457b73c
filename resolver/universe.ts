/**
 * The universe: every candidate of every channel, indexed by name and by the virtual names they provide, with
 * Debian's rules for which candidates satisfy or conflict with a relation.
 */
import { parseRelations, parseProvides, satisfiesVersion, type Relation } from '../debian/relation.ts';
import { compareVersions } from '../debian/version.ts';
import { cmp } from '../util/order.ts';
import type { Candidate } from '../model.ts';

export interface Provided {
  candidate: Candidate;
  version?: string;
}

/** Parsed relation fields of a candidate, computed once. */
export interface Parsed {
  depends: Relation[][];
  recommends: Relation[][];
  conflicts: Relation[];
  breaks: Relation[];
  provides: { name: string; version?: string }[];
}

export class Universe {
  readonly arch: string;
  readonly byName = new Map<string, Candidate[]>();
  readonly providers = new Map<string, Provided[]>();
  private readonly parsed = new Map<Candidate, Parsed>();

  constructor(candidates: Candidate[], arch: string) {
    this.arch = arch;
    // Deterministic order: name, then channel rank, then version descending.
    const sorted = [...candidates].sort(
      (a, b) => cmp(a.name, b.name) || a.channelRank - b.channelRank || compareVersions(b.version, a.version) || cmp(a.arch, b.arch),
    );
    for (const c of sorted) {
      let list = this.byName.get(c.name);
      if (!list) this.byName.set(c.name, (list = []));
      // A channel lists one version of a name once; keep the first (native arch sorts before `all`? either is fine).
      if (list.some((x) => x.channel === c.channel && x.version === c.version)) continue;
      list.push(c);
      for (const p of this.parse(c).provides) {
        let pl = this.providers.get(p.name);
        if (!pl) this.providers.set(p.name, (pl = []));
        const entry: Provided = { candidate: c };
        if (p.version !== undefined) entry.version = p.version;
        pl.push(entry);
      }
    }
  }

  parse(c: Candidate): Parsed {
    let p = this.parsed.get(c);
    if (!p) {
      p = {
        depends: [...parseRelations(c.preDepends), ...parseRelations(c.depends)],
        recommends: parseRelations(c.recommends),
        conflicts: parseRelations(c.conflicts).flat(),
        breaks: parseRelations(c.breaks).flat(),
        provides: parseProvides(c.provides),
      };
      this.parsed.set(c, p);
    }
    return p;
  }

  /** Whether a relation's architecture qualifier can be met in this single-architecture universe. */
  private archOk(r: Relation): boolean {
    const q = r.archQualifier;
    return q === undefined || q === 'any' || q === 'native' || q === this.arch;
  }

  /** Candidates that satisfy a dependency relation: the real package with a matching version, or a provider. */
  satisfiers(r: Relation): Candidate[] {
    if (!this.archOk(r)) return [];
    const out: Candidate[] = [];
    for (const c of this.byName.get(r.name) ?? []) {
      if (r.op === undefined || satisfiesVersion(c.version, r.op, r.version!)) out.push(c);
    }
    for (const p of this.providers.get(r.name) ?? []) {
      if (r.op === undefined || (p.version !== undefined && satisfiesVersion(p.version, r.op, r.version!))) {
        if (!out.includes(p.candidate)) out.push(p.candidate);
      }
    }
    return out;
  }

  /** Candidates a Conflicts/Breaks relation of `owner` rules out (never `owner`'s own name). */
  conflicting(owner: Candidate, r: Relation): Candidate[] {
    return this.satisfiers(r).filter((c) => c.name !== owner.name);
  }

  /** All names in the universe, for suggestions. */
  names(): string[] {
    return [...this.byName.keys()];
  }
}


export function describeCandidate(c: Candidate): string {
  return `${c.name} ${c.version} (${c.channel})`;
}
