/**
 * Debian relationship fields (Depends, Pre-Depends, Recommends, Conflicts, Breaks, Provides) as they
 * appear in binary `Packages` indexes, and version constraints as the manifest writes them.
 *
 * A field is a comma-separated AND list of groups; a group is a `|`-separated list of alternatives; an
 * alternative is `name[:archqual] [(op version)] [[arch ...]] [<profile ...> ...]`. Whitespace, including
 * newlines of folded fields, may appear between any two tokens. Architecture restriction lists and build
 * profile lists (source-package syntax) are accepted and ignored. As in dpkg, the obsolete operators `<`
 * and `>` mean `<=` and `>=`.
 */
import type { RelationOp } from '../model.ts';
import { compareVersions, isValidVersion } from './version.ts';

export interface Relation {
  name: string;
  /** `any`, `native` or an architecture name, from `name:qualifier`. */
  archQualifier?: string;
  op?: RelationOp;
  version?: string;
}

/** A version requirement on one package, e.g. `{ op: '>=', version: '550' }`. */
export interface VersionConstraint {
  op: RelationOp;
  version: string;
}

/**
 * Parses a relationship field into groups of alternatives. An empty or blank field gives `[]`; empty
 * groups (a trailing or doubled comma) are skipped. Throws an Error naming the field text and the
 * offending position on anything else malformed.
 */
export function parseRelations(field: string): Relation[][] {
  const p: Parser = { s: field, i: 0 };
  const groups: Relation[][] = [];
  skipSpace(p);
  while (p.i < p.s.length) {
    if (p.s.charCodeAt(p.i) === COMMA) {
      p.i++;
      skipSpace(p);
      continue;
    }
    const alts: Relation[] = [];
    for (;;) {
      alts.push(parseAlternative(p));
      skipSpace(p);
      if (p.i >= p.s.length) break;
      const c = p.s.charCodeAt(p.i);
      if (c === COMMA) break;
      if (c !== PIPE) fail(p, 'expected ",", "|" or the end');
      p.i++;
      skipSpace(p);
    }
    groups.push(alts);
  }
  return groups;
}

/**
 * Parses a Provides field: a comma-separated list of `name` or `name (= version)`. Alternatives,
 * architecture qualifiers and operators other than `=` are errors, as in dpkg.
 */
export function parseProvides(field: string): { name: string; version?: string }[] {
  const out: { name: string; version?: string }[] = [];
  for (const group of parseRelations(field)) {
    if (group.length !== 1) throw new Error(`invalid Provides field "${field}": alternatives are not allowed`);
    const r = group[0]!;
    if (r.archQualifier !== undefined) throw new Error(`invalid Provides field "${field}": architecture qualifiers are not allowed`);
    if (r.op !== undefined && r.op !== '=') throw new Error(`invalid Provides field "${field}": only "=" is allowed`);
    out.push(r.version !== undefined ? { name: r.name, version: r.version } : { name: r.name });
  }
  return out;
}

/** True when `version` satisfies `op wanted`, e.g. `satisfiesVersion('2.36-9', '>=', '2.36')`. */
export function satisfiesVersion(version: string, op: RelationOp, wanted: string): boolean {
  const c = compareVersions(version, wanted);
  switch (op) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}

/** `libc6 (>= 2.36)`, `python3:any`, `foo:amd64 (= 1.0)`. */
export function formatRelation(r: Relation): string {
  let s = r.archQualifier !== undefined ? `${r.name}:${r.archQualifier}` : r.name;
  if (r.op !== undefined && r.version !== undefined) s += ` (${r.op} ${r.version})`;
  return s;
}

/** `a | b (>= 1)`. */
export function formatGroup(alts: Relation[]): string {
  return alts.map(formatRelation).join(' | ');
}

/** A whole field: groups joined with `, `. */
export function formatRelations(groups: Relation[][]): string {
  return groups.map(formatGroup).join(', ');
}

/** `>= 550`. */
export function formatConstraint(c: VersionConstraint): string {
  return `${c.op} ${c.version}`;
}

/**
 * Parses a manifest version constraint: `"*"` or a blank string mean any version (undefined);
 * `"OP VERSION"` with OP one of `<<`, `<=`, `=`, `>=`, `>>` (space optional); a bare version means `=`.
 * Throws an Error saying what is wrong otherwise (unknown or obsolete operator, invalid version).
 */
export function parseConstraint(text: string): VersionConstraint | undefined {
  const s = text.trim();
  if (s === '' || s === '*') return undefined;
  const m = /^(<<|<=|>=|>>|==?|<|>|!=|~=|\^|~)?\s*(.*)$/.exec(s)!;
  const opText = m[1];
  const version = m[2]!;
  let op: RelationOp;
  switch (opText) {
    case undefined:
    case '=':
      op = '=';
      break;
    case '<<':
    case '<=':
    case '>=':
    case '>>':
      op = opText;
      break;
    case '<':
    case '>':
      throw new Error(`version constraint "${text}": "${opText}" is ambiguous; write "${opText}${opText}" (strictly ${opText === '<' ? 'less' : 'greater'}) or "${opText}=" (or equal)`);
    default:
      throw new Error(`version constraint "${text}": unknown operator "${opText}"; use one of <<, <=, =, >=, >> or "*"`);
  }
  if (version === '') throw new Error(`version constraint "${text}": a version must follow "${op}"`);
  if (!isValidVersion(version)) throw new Error(`version constraint "${text}": "${version}" is not a valid Debian version`);
  return { op, version };
}

const LOWER: Record<RelationOp, boolean> = { '<<': false, '<=': false, '=': true, '>=': true, '>>': true };
/** Among bounds at the same version, which is tighter. */
const TIGHTNESS: Record<RelationOp, number> = { '<<': 1, '<=': 0, '=': 2, '>=': 0, '>>': 1 };

/**
 * The stronger of two requirements on the same package, used to record one requirement per
 * host-provided package. Undefined means "any version". Between lower bounds (`>=`, `>>`, `=`) the
 * higher version wins, and at equal versions `=` over `>>` over `>=`; between upper bounds (`<<`, `<=`)
 * the lower version wins, `<<` over `<=`. A lower bound wins over an upper bound: a host-provided
 * package's minimum version is what can be checked against the host.
 */
export function strongerRequirement(a: VersionConstraint | undefined, b: VersionConstraint | undefined): VersionConstraint | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const al = LOWER[a.op];
  const bl = LOWER[b.op];
  if (al !== bl) return al ? a : b;
  const c = compareVersions(a.version, b.version);
  if (c !== 0) return (al ? c > 0 : c < 0) ? a : b;
  return TIGHTNESS[b.op] > TIGHTNESS[a.op] ? b : a;
}

interface Parser {
  s: string;
  i: number;
}

const COMMA = 44;
const PIPE = 124;
const COLON = 58;
const LPAREN = 40;
const RPAREN = 41;
const LBRACKET = 91;
const RBRACKET = 93;
const LT = 60;
const GT = 62;
const EQ = 61;

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13;
}

function skipSpace(p: Parser): void {
  while (p.i < p.s.length && isSpace(p.s.charCodeAt(p.i))) p.i++;
}

/** Ends a package name or architecture qualifier. */
function isNameEnd(c: number): boolean {
  return isSpace(c) || c === COMMA || c === PIPE || c === COLON || c === LPAREN || c === RPAREN || c === LBRACKET || c === LT;
}

function fail(p: Parser, what: string): never {
  throw new Error(`invalid relationship field "${p.s}": ${what} at offset ${p.i}`);
}

function parseWord(p: Parser): string {
  const start = p.i;
  while (p.i < p.s.length && !isNameEnd(p.s.charCodeAt(p.i))) p.i++;
  return p.s.slice(start, p.i);
}

function parseAlternative(p: Parser): Relation {
  const name = parseWord(p);
  if (name === '') fail(p, 'expected a package name');
  const r: Relation = { name };
  if (p.i < p.s.length && p.s.charCodeAt(p.i) === COLON) {
    p.i++;
    const q = parseWord(p);
    if (q === '') fail(p, 'expected an architecture qualifier after ":"');
    r.archQualifier = q;
  }
  skipSpace(p);
  if (p.i < p.s.length && p.s.charCodeAt(p.i) === LPAREN) {
    p.i++;
    skipSpace(p);
    r.op = parseOp(p);
    skipSpace(p);
    const start = p.i;
    while (p.i < p.s.length && p.s.charCodeAt(p.i) !== RPAREN && !isSpace(p.s.charCodeAt(p.i))) p.i++;
    const version = p.s.slice(start, p.i);
    skipSpace(p);
    if (p.i >= p.s.length || p.s.charCodeAt(p.i) !== RPAREN) fail(p, 'expected ")"');
    if (version === '') fail(p, 'expected a version');
    p.i++;
    r.version = version;
    skipSpace(p);
  }
  // Architecture restriction list `[amd64 !i386]` and build-profile lists `<!nocheck> <stage1 cross>`.
  while (p.i < p.s.length) {
    const c = p.s.charCodeAt(p.i);
    const close = c === LBRACKET ? RBRACKET : c === LT ? GT : 0;
    if (close === 0) break;
    const end = p.s.indexOf(String.fromCharCode(close), p.i + 1);
    if (end < 0) fail(p, `unterminated "${String.fromCharCode(c)}"`);
    p.i = end + 1;
    skipSpace(p);
  }
  return r;
}

function parseOp(p: Parser): RelationOp {
  const c = p.s.charCodeAt(p.i);
  const d = p.i + 1 < p.s.length ? p.s.charCodeAt(p.i + 1) : 0;
  let op: RelationOp;
  let len = 2;
  if (c === LT) {
    op = d === LT ? '<<' : '<=';
    if (d !== LT && d !== EQ) len = 1;
  } else if (c === GT) {
    op = d === GT ? '>>' : '>=';
    if (d !== GT && d !== EQ) len = 1;
  } else if (c === EQ) {
    op = '=';
    len = 1;
  } else {
    return fail(p, 'expected a relation operator');
  }
  p.i += len;
  return op;
}
