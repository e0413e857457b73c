/**
 * Debian version numbers, ordered exactly as dpkg orders them (`dpkg --compare-versions`).
 *
 * A version is `[epoch:]upstream[-revision]`: the epoch ends at the first `:`, the revision starts after
 * the last `-` of what follows the epoch. Parts compare in order epoch, upstream, revision. Upstream and
 * revision compare by dpkg's `verrevcmp`: alternating runs of non-digits (compared character by
 * character, `~` before everything including the end of the string, then the end, then letters, then
 * all other characters) and runs of digits (compared as numbers of any length). A missing revision
 * compares like `0`, so `1.0` equals `1.0-0`.
 */

export interface Version {
  epoch: number;
  upstream: string;
  revision: string;
}

/**
 * Compares two version strings: negative when `a` sorts before `b`, 0 when dpkg treats them as equal,
 * positive after. It does not validate (see `isValidVersion`); like dpkg it orders any string. It finds
 * the parts by index and compares in place, allocating nothing, because the resolver calls it millions of
 * times.
 */
export function compareVersions(a: string, b: string): number {
  if (a === b) return 0;
  const ac = a.indexOf(':');
  const bc = b.indexOf(':');
  // Epochs: digits compared numerically; an absent epoch is 0.
  const ep = ac < 0 ? (bc < 0 ? 0 : compareDigits('0', 0, 1, b, 0, bc)) : bc < 0 ? compareDigits(a, 0, ac, '0', 0, 1) : compareDigits(a, 0, ac, b, 0, bc);
  if (ep !== 0) return ep;
  const as = ac + 1;
  const bs = bc + 1;
  let ah = a.lastIndexOf('-');
  let bh = b.lastIndexOf('-');
  if (ah < as) ah = -1;
  if (bh < bs) bh = -1;
  const ae = ah < 0 ? a.length : ah;
  const be = bh < 0 ? b.length : bh;
  const up = verrevcmp(a, as, ae, b, bs, be);
  if (up !== 0) return up;
  return verrevcmp(a, ah < 0 ? a.length : ah + 1, a.length, b, bh < 0 ? b.length : bh + 1, b.length);
}

/** Character classes for dpkg's `order()`: digits and the end of string weigh 0, `~` weighs -1, letters
 * their code, anything else its code + 256. */
function order(c: number): number {
  if (c >= 48 && c <= 57) return 0;
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) return c;
  if (c === 126) return -1;
  return c + 256;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** dpkg's `verrevcmp` on `a[ai, ae)` and `b[bi, be)`. */
function verrevcmp(a: string, ai: number, ae: number, b: string, bi: number, be: number): number {
  while (ai < ae || bi < be) {
    // Non-digit run. When the loop runs, at least one side is at a non-digit, whose order is non-zero,
    // so the two sides either differ (and we return) or are both non-digits (and both advance).
    while ((ai < ae && !isDigit(a.charCodeAt(ai))) || (bi < be && !isDigit(b.charCodeAt(bi)))) {
      const x = ai < ae ? order(a.charCodeAt(ai)) : 0;
      const y = bi < be ? order(b.charCodeAt(bi)) : 0;
      if (x !== y) return x - y;
      ai++;
      bi++;
    }
    // Digit run, compared numerically without converting to a number.
    while (ai < ae && a.charCodeAt(ai) === 48) ai++;
    while (bi < be && b.charCodeAt(bi) === 48) bi++;
    let firstDiff = 0;
    while (ai < ae && bi < be) {
      const x = a.charCodeAt(ai);
      const y = b.charCodeAt(bi);
      if (!isDigit(x) || !isDigit(y)) break;
      if (firstDiff === 0) firstDiff = x - y;
      ai++;
      bi++;
    }
    if (ai < ae && isDigit(a.charCodeAt(ai))) return 1;
    if (bi < be && isDigit(b.charCodeAt(bi))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/** Compares two digit strings `a[ai, ae)` and `b[bi, be)` as unbounded non-negative integers. */
function compareDigits(a: string, ai: number, ae: number, b: string, bi: number, be: number): number {
  while (ai < ae && a.charCodeAt(ai) === 48) ai++;
  while (bi < be && b.charCodeAt(bi) === 48) bi++;
  const d = ae - ai - (be - bi);
  if (d !== 0) return d;
  for (; ai < ae; ai++, bi++) {
    const x = a.charCodeAt(ai) - b.charCodeAt(bi);
    if (x !== 0) return x;
  }
  return 0;
}

/**
 * Splits a version into its parts, with dpkg's checks. Throws an Error carrying dpkg's own wording when
 * dpkg would reject the version (empty, embedded blanks, bad epoch, empty revision) or warn about it
 * (upstream not starting with a digit, a character outside dpkg's allowed set). Leading and trailing
 * blanks are ignored, as dpkg ignores them.
 */
export function parseVersion(v: string): Version {
  const problem = versionProblem(v);
  if (problem !== undefined) throw new Error(`invalid version "${v}": ${problem}`);
  const s = trimBlanks(v);
  const colon = s.indexOf(':');
  const rest = colon < 0 ? s : s.slice(colon + 1);
  const hyphen = rest.lastIndexOf('-');
  return {
    epoch: colon < 0 ? 0 : Number(s.slice(0, colon)),
    upstream: hyphen < 0 ? rest : rest.slice(0, hyphen),
    revision: hyphen < 0 ? '' : rest.slice(hyphen + 1),
  };
}

/** True when dpkg accepts `v` as a version without error or warning (`dpkg --validate-version`). */
export function isValidVersion(v: string): boolean {
  return versionProblem(v) === undefined;
}

/** Formats parts back into a version string (the epoch is written only when non-zero). */
export function formatVersion(v: Version): string {
  return `${v.epoch !== 0 ? `${v.epoch}:` : ''}${v.upstream}${v.revision !== '' ? `-${v.revision}` : ''}`;
}

/** Largest epoch dpkg accepts (it stores epochs in a C `int`). */
const MAX_EPOCH = 2147483647;
const UPSTREAM_CHARS = /^[0-9][A-Za-z0-9.+~:-]*$/;
const REVISION_CHARS = /^[A-Za-z0-9.+~]*$/;

/** dpkg's blanks: space and tab only. */
function trimBlanks(s: string): string {
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}

/** What dpkg's `parseversion` would complain about, in its words, or undefined. Checks run in dpkg's order. */
function versionProblem(raw: string): string | undefined {
  const s = trimBlanks(raw);
  if (s === '') return 'version string is empty';
  if (/[ \t]/.test(s)) return 'version string has embedded spaces';
  let rest = s;
  const colon = s.indexOf(':');
  if (colon >= 0) {
    // dpkg reads the epoch with strtol: an optional sign, then decimal digits.
    const m = /^[+-]?[0-9]+/.exec(s);
    if (m === null) return 'epoch in version is empty';
    if (m[0].length !== colon) return 'epoch in version is not number';
    const epoch = Number(m[0]);
    if (epoch < 0) return 'epoch in version is negative';
    if (epoch > MAX_EPOCH) return 'epoch in version is too big';
    rest = s.slice(colon + 1);
    if (rest === '') return 'nothing after colon in version number';
  }
  const hyphen = rest.lastIndexOf('-');
  const upstream = hyphen < 0 ? rest : rest.slice(0, hyphen);
  const revision = hyphen < 0 ? '' : rest.slice(hyphen + 1);
  if (hyphen >= 0 && revision === '') return 'revision number is empty';
  if (upstream === '') return 'version number is empty';
  if (!UPSTREAM_CHARS.test(upstream)) {
    return /^[0-9]/.test(upstream) ? 'invalid character in version number' : 'version number does not start with digit';
  }
  if (!REVISION_CHARS.test(revision)) return 'invalid character in revision number';
  return undefined;
}
