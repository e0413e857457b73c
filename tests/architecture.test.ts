/** The import graph and the store's ownership of its directories, as the README's Architecture section states them. */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

test('scripts/check-architecture.ts finds no cycle, no command importing a command, no run/ -> realiser/ edge, no store path outside store/, each shared helper defined once', (t) => {
  const out = execFileSync(process.execPath, [resolve(import.meta.dirname, '../scripts/check-architecture.ts')], { encoding: 'utf8' });
  t.regex(out, /^check-architecture: \d+ modules, \d+ imports .* no cycle, no forbidden edge, no store path built outside store\/, each shared helper defined once\n$/);
});
