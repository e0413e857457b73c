/** The registry client's pure parts: Docker config credentials, WWW-Authenticate challenges, token URLs, and when plain HTTP is used. */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentialsFor, parseChallenge, tokenOf, tokenUrl } from '../registry/auth.ts';
import { RegistryClient, isLoopback } from '../registry/client.ts';
import { parseReference } from '../realiser/oci/reference.ts';

function configDir(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'strata-dcfg-'));
  writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return dir;
}

test('credentials come from auths, under any of the key forms docker login writes', (t) => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const dir = configDir({ auths: { 'https://127.0.0.1:5000/v1/': { auth: b64('alice:pa:ss') }, '10.0.0.7:443': { username: 'bob', password: 'pw' } } });
  t.deepEqual(credentialsFor('127.0.0.1:5000', { DOCKER_CONFIG: dir }), { username: 'alice', password: 'pa:ss' });
  t.deepEqual(credentialsFor('10.0.0.7:443', { DOCKER_CONFIG: dir }), { username: 'bob', password: 'pw' });
  t.is(credentialsFor('127.0.0.1:5001', { DOCKER_CONFIG: dir }), undefined);
  t.is(credentialsFor('127.0.0.1:5000', { DOCKER_CONFIG: join(dir, 'absent') }), undefined);
  const home = mkdtempSync(join(tmpdir(), 'strata-home-'));
  t.is(credentialsFor('127.0.0.1:5000', { HOME: home }), undefined);
});

test('a broken config or auth entry is E_USAGE naming the file, never its content', (t) => {
  const bad = configDir({ auths: { '127.0.0.1:5000': { auth: Buffer.from('no-colon-secret').toString('base64') } } });
  const e = t.throws(() => credentialsFor('127.0.0.1:5000', { DOCKER_CONFIG: bad }));
  t.regex(e!.message, /the "auth" of 127\.0\.0\.1:5000 in .*config\.json is not base64 of user:password/);
  t.false(e!.message.includes('no-colon-secret'));
  const notJson = configDir('{ "auths": ');
  t.regex(t.throws(() => credentialsFor('127.0.0.1:5000', { DOCKER_CONFIG: notJson }))!.message, /config\.json is not valid JSON/);
});

test('challenges: Bearer with quoted parameters (commas inside quotes), Basic, and the token URL they make', (t) => {
  const ch = parseChallenge('Bearer realm="http://127.0.0.1:9999/token",service="reg",scope="repository:a/b:pull,push"');
  t.deepEqual(ch, { scheme: 'bearer', params: { realm: 'http://127.0.0.1:9999/token', service: 'reg', scope: 'repository:a/b:pull,push' } });
  t.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } });
  t.is(parseChallenge(undefined), undefined);
  const u = new URL(tokenUrl(ch!, 'repository:a/b:pull'));
  t.is(u.searchParams.get('service'), 'reg');
  t.is(u.searchParams.get('scope'), 'repository:a/b:pull');
  t.is(tokenOf(Buffer.from('{"token":"t1"}')), 't1');
  t.is(tokenOf(Buffer.from('{"access_token":"t2"}')), 't2');
  t.is(tokenOf(Buffer.from('{}')), undefined);
});

test('plain HTTP only for loopback registries or with insecure; a reference without a registry is refused', (t) => {
  t.true(isLoopback('127.0.0.1:5000'));
  t.true(isLoopback('localhost:5000'));
  t.true(isLoopback('[::1]:5000'));
  t.false(isLoopback('10.0.0.7:5000'));
  t.is(new RegistryClient(parseReference('127.0.0.1:5000/a/b'), 'pull').base, 'http://127.0.0.1:5000');
  t.is(new RegistryClient(parseReference('10.0.0.7:5000/a/b'), 'pull').base, 'https://10.0.0.7:5000');
  t.is(new RegistryClient(parseReference('10.0.0.7:5000/a/b'), 'pull', { insecure: true }).base, 'http://10.0.0.7:5000');
  t.is(new RegistryClient(parseReference('10.0.0.7:5000/a/b'), 'pull,push').scope, 'repository:a/b:pull,push');
  t.regex(t.throws(() => new RegistryClient(parseReference('team/b'), 'pull'))!.message, /names no registry/);
});
