/**
 * Snapshot archives, laid out as Debian's snapshot service and apt's snapshot support lay them out
 * (`<base>/archive/<archive>/<YYYYMMDDTHHMMSSZ>/dists/...` and `.../pool/...`): a channel read at a point in time,
 * and a realise whose live mirror has dropped a locked .deb, served from the snapshot with the same image digest.
 * The snapshot server is a loopback one over real signed fixture archives; like the real service it answers any
 * timestamp with the newest import at or before it (by redirect).
 */
import test from 'ava';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildMirror, serveMirror, type FixtureSuite, type ServedMirror } from './helpers/mirror.ts';
import { project, closeSharedMirror } from './helpers/project.ts';
import { snapshotTimeOfRelease } from '../channels/mirror.ts';

test.after.always(closeSharedMirror);

const suite = (version: string, date: string): FixtureSuite => ({
  suite: 'snapsuite',
  codename: 'strata-snap',
  date,
  components: { main: [{ name: 'hello-snap', version, files: [{ path: 'usr/share/hello-snap/version', content: `${version}\n` }] }] },
});

let work: string;
let keyring: string;
let snapshots: ServedMirror;
let redirector: Server;
let snapUrl: string;
const EARLY = '20240601T120000Z';
const LATE = '20240901T120000Z';

test.before(async () => {
  work = mkdtempSync(join(tmpdir(), 'strata-snapshot-'));
  const early = await buildMirror(join(work, 'snap/archive/debian', EARLY), [suite('1.0-1', 'Sat, 01 Jun 2024 12:00:00 UTC')]);
  await buildMirror(join(work, 'snap/archive/debian', LATE), [suite('2.0-1', 'Sun, 01 Sep 2024 12:00:00 UTC')]);
  keyring = early.keyring;
  snapshots = await serveMirror(join(work, 'snap'));
  // Any timestamp -> the newest import at or before it, as the snapshot service answers.
  redirector = createServer((req, res) => {
    const m = /^\/archive\/([^/]+)\/(\d{8}T\d{6}Z)(\/.*)$/.exec(req.url ?? '');
    const stamps = m ? readdirSync(join(work, 'snap/archive', m[1]!)).filter((s) => s <= m[2]!).sort() : [];
    if (!m || stamps.length === 0) return void res.writeHead(404).end();
    res.writeHead(302, { location: `${snapshots.url}/archive/${m[1]}/${stamps.at(-1)}${m[3]}` }).end();
  });
  await new Promise<void>((ok) => redirector.listen(0, '127.0.0.1', () => ok()));
  snapUrl = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`;
});
test.after.always(async () => {
  await snapshots?.close();
  redirector?.close();
});

const manifest = (channel: string) => `[project]\nname = "snap"\narch = "amd64"\n\n[channels.old]\nsuite = "snapsuite"\nsigned-by = "${keyring}"\n${channel}\n[resolve]\nessential = false\n\n[packages]\nhello-snap = "*"\n`;

test('a channel read at a point in time locks what the archive held then, and records the timestamp', async (t) => {
  const p = await project();
  p.writeManifest(manifest(`snapshot = "20240715T000000Z"\nsnapshot-url = "${snapUrl}"\n`));
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  const lock = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  t.regex(lock, /^snapshot = "20240715T000000Z"\nsnapshot-archive = "debian"\nsnapshot-urls = \[".*"\]$/m);
  t.regex(lock, /name = "hello-snap"\nversion = "1\.0-1"/);
  const realise = await p.strata(['realise', '--locked']);
  t.is(realise.code, 0, realise.stderr);

  p.writeManifest(manifest(`snapshot = "${LATE}"\nsnapshot-url = "${snapUrl}"\n`));
  t.is((await p.strata(['lock'])).code, 0);
  t.regex(readFileSync(join(p.dir, 'strata.lock'), 'utf8'), /name = "hello-snap"\nversion = "2\.0-1"/);

  // "latest" locks the newest import and records the concrete time of locking
  p.writeManifest(manifest(`snapshot = "latest"\nsnapshot-url = "${snapUrl}"\n`));
  t.is((await p.strata(['lock'])).code, 0);
  const latest = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  t.regex(latest, /name = "hello-snap"\nversion = "2\.0-1"/);
  const stamp = /^snapshot = "(\d{8}T\d{6}Z)"$/m.exec(latest)?.[1];
  t.truthy(stamp && stamp > LATE, latest);

  p.writeManifest(manifest('snapshot = "yesterday"\n'));
  const bad = await p.strata(['lock']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /strata\.toml:\d+:\d+: channel "old": snapshot = "yesterday" is not a time like "20261121T091544Z"/);
});

test('a realise whose mirror has dropped a locked .deb fetches it from the snapshot archive, with the same image digest', async (t) => {
  const live = await buildMirror(join(work, 'live'), [suite('1.0-1', 'Sat, 01 Jun 2024 12:00:00 UTC')]);
  const served = await serveMirror(live.root);
  try {
    const p = await project();
    p.writeManifest(manifest(`url = "${served.url}"\n`));
    t.is((await p.strata(['lock'])).code, 0);
    const first = await p.strata(['realise', '--locked']);
    t.is(first.code, 0, first.stderr);
    const digest = /^image (sha256:\S+)$/m.exec(first.stdout)![1];

    // The archive moves on: the live pool loses the .deb; the snapshot taken after the Release still has it.
    const at = snapshotTimeOfRelease('Sat, 01 Jun 2024 12:00:00 UTC')!;
    t.is(at, '20240602T000000Z');
    const deb = live.debs.find((d) => d.name === 'hello-snap')!;
    rmSync(deb.path);
    const fresh = { STRATA_CACHE_DIR: join(p.dir, 'fresh-cache') };
    const gone = await p.strata(['realise', '--locked'], { env: fresh });
    t.is(gone.code, 1);
    t.regex(gone.stderr, /the mirror no longer has it/);

    const r = await p.strata(['realise', '--locked'], { env: { ...fresh, STRATA_DEBIAN_SNAPSHOT: snapUrl } });
    t.is(r.code, 0, r.stderr);
    t.is(/^image (sha256:\S+)$/m.exec(r.stdout)![1], digest);
    t.regex(r.stderr + r.stdout, /1 packages the mirror no longer has came from the snapshot archive: hello-snap/);
    t.true(snapshots.requests.some((u) => u.startsWith(`/archive/debian/${EARLY}/pool/`)), snapshots.requests.join('\n'));
  } finally {
    await served.close();
  }
});
