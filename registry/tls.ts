/**
 * Extra certificate authorities for TLS (a registry, a cache registry or a mirror with a private CA): `--ca-file FILE`
 * or `SSL_CERT_FILE`, a PEM file of one or more certificates, added to Node's bundled roots for every TLS
 * connection of this process. A certificate a connection still cannot verify is a refusal naming the problem
 * (registry/client.ts), never a silent fallback to plain HTTP.
 */
import { readFileSync, statSync } from 'node:fs';
import { StrataError } from '../errors.ts';
import { trustExtraCas } from '../store/http.ts';

const MAX_CA_FILE = 8 * 1024 * 1024;
const PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Adds the certificates of the PEM file `path` to the CAs every TLS connection of this process trusts; `from` names the option for messages. */
export function useCaFile(path: string, from: string): number {
  let text: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new StrataError('E_USAGE', `${from} ${path} is not a regular file`);
    if (st.size > MAX_CA_FILE) throw new StrataError('E_USAGE', `${from} ${path} is larger than ${MAX_CA_FILE} bytes`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof StrataError) throw e;
    throw new StrataError('E_USAGE', `${from} ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const certs = text.match(PEM) ?? [];
  if (certs.length === 0) throw new StrataError('E_USAGE', `${from} ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  // Added before the first TLS connection (store/http.ts), where a certificate Node cannot parse is refused.
  trustExtraCas(certs, `${from} ${path}`);
  return certs.length;
}

/** Whether a network failure's text is a TLS certificate problem (Node's codes: UNABLE_TO_VERIFY_LEAF_SIGNATURE, SELF_SIGNED_CERT_IN_CHAIN, CERT_HAS_EXPIRED, ERR_TLS_CERT_ALTNAME_INVALID, ...). */
export function isCertificateProblem(message: string): boolean {
  return /\b(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_[A-Z_]+|ERR_TLS_CERT_ALTNAME_INVALID)\b/.test(message);
}
