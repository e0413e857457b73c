/**
 * Extra CAs (--ca-file, SSL_CERT_FILE) are added to Node's roots before the first TLS connection, not at start
 * (store/http.ts). A file with a certificate Node cannot parse is then refused with one E_USAGE message naming it, at
 * that request and at every later one: no request goes out without the CAs asked for. Own file: the CAs are the
 * process's.
 */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useCaFile } from '../registry/tls.ts';
import { defaultRetryPolicy, request } from '../store/http.ts';
import { StrataError } from '../errors.ts';

test('a CA file whose certificate does not parse is refused at the first TLS request, and at every later one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-tls-ca-'));
  const file = join(dir, 'bad.pem');
  writeFileSync(file, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
  t.is(useCaFile(file, '--ca-file'), 1, 'read and counted at start; not yet given to TLS');
  for (const attempt of [1, 2]) {
    const e = await t.throwsAsync(request('GET', 'https://127.0.0.1:9/', {}, defaultRetryPolicy));
    t.true(e instanceof StrataError, `attempt ${attempt}: ${e?.message}`);
    t.is((e as StrataError).code, 'E_USAGE');
    t.regex(e!.message, new RegExp(`^--ca-file ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: a certificate in it is not valid: `));
  }
});
