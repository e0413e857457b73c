/** Code-unit string order: the one order strata sorts by wherever bytes must not depend on the locale. */
export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
