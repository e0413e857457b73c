/**
 * `strata push`, `strata pull` and `strata run --image` against a real registry: Debian's docker-registry on
 * loopback (tests/helpers/registry.ts), once plain and once with htpasswd Basic auth, with skopeo as the
 * independent client that must agree on every digest. The environment is the runnable fixture (busybox-fixture).
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { closeSharedMirror, project, runCli, type Project } from './helpers/project.ts';
import { makeFakeGpuTree, FAKE_DRIVER, runManifest } from './helpers/runEnv.ts';
import { bearerProxy, dockerConfig, droppingProxy, flippingProxy, haveRegistry, layoutDigest, startRegistry, type DropOptions, type Registry } from './helpers/registry.ts';

const run = promisify(execFile);
const USER = 'strata-user';
const PASSWORD = 'pw-s3cret-9e1f';

let plain: Registry;
let authed: Registry;
let p: Project;
/** What the first push printed. */
let pushed: { ref: string; digest: string; stdout: string };
/** A loopback port nothing listens on: the compute node's "mirror". */
const CLOSED_MIRROR = 'http://127.0.0.1:9/debian';

/** The lock's closure: the first `closure = "..."` line of strata.lock (the lock's own, before any package's). */
const lockClosure = (): string | undefined => /^closure = "(sha256:[0-9a-f]{64})"$/m.exec(readFileSync(join(p.dir, 'strata.lock'), 'utf8'))?.[1];
const digestLine = (stdout: string, repo: string): string | undefined => new RegExp(`^${repo.replace(/[.]/g, '\\.')}@(sha256:[0-9a-f]{64})$`, 'm').exec(stdout)?.[1];
const count = (s: string, re: RegExp) => s.match(new RegExp(re, 'gm'))?.length ?? 0;

/** The CLI with a fresh store, in an empty directory (no strata.toml), with no mirror to reach. */
function computeNode(extra: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'strata-node-'));
  const cache = join(dir, 'cache');
  return {
    dir,
    cache,
    strata: (args: string[]) => runCli(args, { cwd: dir, env: { STRATA_CACHE_DIR: cache, STRATA_DEBIAN_MIRROR: CLOSED_MIRROR, DOCKER_CONFIG: join(dir, 'no-docker-config'), ...extra }, timeoutMs: 120_000 }),
  };
}

test.before(async () => {
  if (!haveRegistry()) throw new Error('docker-registry is not installed (Debian package docker-registry; scripts/setup-host.sh installs it)');
  [plain, authed] = await Promise.all([startRegistry(), startRegistry({ auth: { user: USER, password: PASSWORD } })]);
  p = await project();
  writeFileSync(join(p.dir, 'strata.toml'), runManifest(p.served.url, p.mirror.keyring));
  const lock = await p.strata(['lock']);
  if (lock.code !== 0) throw new Error(lock.stderr);
});

test.after.always(async () => {
  await Promise.all([plain?.stop(), authed?.stop()]);
  await closeSharedMirror();
});

test.serial('push uploads every blob and prints REF@digest; skopeo inspect and skopeo copy agree with realise --gzip --oci', async (t) => {
  const repo = `${plain.host}/team/runtest`;
  const r = await p.strata(['push', `${repo}:v1`, '--tag', 'stable']);
  t.is(r.code, 0, r.stderr);
  const digest = digestLine(r.stdout, repo) ?? 'no REF@digest line';
  t.regex(digest, /^sha256:/, r.stdout);
  pushed = { ref: `${repo}:v1`, digest, stdout: r.stdout };
  const blobs = count(r.stdout, /: pushed /);
  t.true(blobs >= 2, r.stdout);
  t.is(count(r.stdout, /: already there$/), 0);
  t.regex(r.stdout, new RegExp(`^${blobs} blobs pushed .*, 0 already there$`, 'm'));

  const oci = join(p.dir, 'oci');
  const realised = await p.strata(['realise', '--gzip', '--oci', oci]);
  t.is(realised.code, 0, realised.stderr);
  t.is(layoutDigest(oci), digest);
  t.regex(realised.stdout, new RegExp(`^image ${digest}$`, 'm'));

  for (const tag of ['v1', 'stable']) {
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${repo}:${tag}`]);
    t.is(stdout.trim(), digest, tag);
  }
  const raw = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${repo}:v1`])).stdout) as { mediaType: string; annotations?: Record<string, string>; layers: { mediaType: string }[] };
  t.is(raw.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  t.true(raw.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip'));
  t.is(raw.annotations?.['dev.strata.closure'], lockClosure());
  t.is(raw.layers.length + 1, blobs);

  const copied = join(p.dir, 'copied');
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${repo}:v1`, `oci:${copied}:v1`]);
  t.is(layoutDigest(copied), digest);
});

test.serial('a push without a tag uses the closure prefix; a second push uploads no blob', async (t) => {
  t.truthy(pushed, 'needs the first push');
  const repo = `${plain.host}/team/runtest`;
  const r = await p.strata(['push', repo]);
  t.is(r.code, 0, r.stderr);
  t.is(count(r.stdout, /: pushed /), 0, r.stdout);
  t.is(count(r.stdout, /: already there$/), count(pushed.stdout, /: pushed /));
  t.is(digestLine(r.stdout, repo), pushed.digest);
  const tag = /^pushing \S+ \(([0-9a-f]{12})\)/m.exec(r.stdout)?.[1];
  t.truthy(tag, r.stdout);
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${repo}:${tag}`]);
  t.is(stdout.trim(), pushed.digest);
});

test.serial('the compute node: pull into a fresh store, then run --image with no strata.toml and no mirror', async (t) => {
  t.truthy(pushed, 'needs the first push');
  const node = computeNode();
  const pulled = await node.strata(['pull', pushed.ref]);
  t.is(pulled.code, 0, pulled.stderr);
  t.regex(pulled.stdout, new RegExp(`@${pushed.digest}$`, 'm'));
  t.regex(pulled.stdout, new RegExp(`realises the lock with closure ${lockClosure()}$`, 'm'));
  const r = await node.strata(['run', '--image', pushed.ref, '--', 'sh', '-c', 'echo "$GREETING"; busybox | head -1 | cut -c1-7']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'hello from strata\nBusyBox\n');
  t.false(existsSync(join(node.dir, 'strata.lock')));
  // The layers are unpacked from their gzip blobs as they stream: no uncompressed tar is kept beside them and the tree.
  const config = JSON.parse(readFileSync(join(node.cache, 'blobs/sha256', (JSON.parse(readFileSync(join(node.cache, 'blobs/sha256', pushed.digest.slice(7)), 'utf8')) as { config: { digest: string } }).config.digest.slice(7)), 'utf8')) as { rootfs: { diff_ids: string[] } };
  for (const d of config.rootfs.diff_ids) t.false(existsSync(join(node.cache, 'blobs/sha256', d.slice(7))), `no tar ${d} in the store`);
  // verify compares the tree with its layers, decompressed again, and finds a changed file.
  const clean = await node.strata(['verify']);
  t.is(clean.code, 0, clean.stdout + clean.stderr);
  t.regex(clean.stdout, /rootfs +1 compared with their layers/);
  const rootfs = join(node.cache, 'rootfs', pushed.digest.slice(7));
  const passwd = join(rootfs, 'etc/passwd');
  execFileSync('chmod', ['u+w', join(rootfs, 'etc'), passwd]);
  writeFileSync(passwd, 'intruder:x:0:0::/:/bin/sh\n', { flag: 'a' });
  const bad = await node.strata(['verify']);
  t.is(bad.code, 1, bad.stdout + bad.stderr);
  t.regex(bad.stdout, /damaged: root filesystem [0-9a-f]{12}…: \/etc\/passwd has \d+ bytes, the layers give \d+; dropped/);
  t.false(existsSync(rootfs));
  const shell = await runCli(['shell', '--image', pushed.ref], { cwd: node.dir, env: { STRATA_CACHE_DIR: node.cache, STRATA_DEBIAN_MIRROR: CLOSED_MIRROR }, input: 'echo "in $(pwd): $GREETING"; exit 3\n', timeoutMs: 60_000 });
  t.is(shell.code, 3, shell.stderr);
  t.regex(shell.stdout, new RegExp(`in ${node.dir}: hello from strata`));

  // Another node never pulled: run --image pulls on demand, then exits with the command's code.
  const other = computeNode();
  const again = await other.strata(['run', '--image', `${plain.host}/team/runtest@${pushed.digest}`, '--', 'sh', '-c', 'exit 5']);
  t.is(again.code, 5, again.stderr);
  t.regex(again.stderr, /pulling /);
});

test.serial('Basic auth from the Docker config: push and pull work; a wrong password is one clear message, without the secret', async (t) => {
  const repo = `${authed.host}/secure/runtest`;
  const good = dockerConfig(authed.host, USER, PASSWORD);
  const r = await p.strata(['push', `${repo}:v1`], { env: { DOCKER_CONFIG: good } });
  t.is(r.code, 0, r.stderr);
  t.is(digestLine(r.stdout, repo), pushed.digest);
  const node = computeNode({ DOCKER_CONFIG: good });
  const pulled = await node.strata(['pull', `${repo}:v1`]);
  t.is(pulled.code, 0, pulled.stderr);

  const wrong = dockerConfig(authed.host, USER, 'not-the-password-77');
  const bad = await p.strata(['push', `${repo}:v2`], { env: { DOCKER_CONFIG: wrong } });
  t.is(bad.code, 1);
  t.regex(bad.stderr, new RegExp(`^error: the registry ${authed.host} refused access to secure/runtest \\(HTTP 401\\): the credentials were not accepted$`, 'm'));
  t.regex(bad.stderr, /^hint: check the user and password/m);
  t.is(count(bad.stderr, /^error: /), 1);
  t.is(bad.stdout, '', 'refused before anything is realised or pushed');
  for (const secret of ['not-the-password-77', Buffer.from(`${USER}:not-the-password-77`).toString('base64'), PASSWORD]) t.false((bad.stdout + bad.stderr).includes(secret));

  const none = await computeNode().strata(['pull', `${repo}:v1`]);
  t.is(none.code, 1);
  t.regex(none.stderr, /it needs credentials and there are none for it/);
  t.regex(none.stderr, /^hint: log in first/m);
});

test.serial('pulling a repository the registry does not have is one clear message', async (t) => {
  const node = computeNode();
  const r = await node.strata(['pull', `${plain.host}/team/nothing-here:v1`]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`^error: the registry ${plain.host} has no repository team/nothing-here \\(asked for ${plain.host}/team/nothing-here:v1\\)$`, 'm'));
  t.is(count(r.stderr, /^error: /), 1);
  const run2 = await node.strata(['run', '--image', `${plain.host}/team/runtest:no-such-tag`, '--', 'true']);
  t.is(run2.code, 1);
  t.regex(run2.stderr, new RegExp(`^error: the repository ${plain.host}/team/runtest has no tag no-such-tag \\(it has: .*\\bv1\\b.*\\)$`, 'm'));
});

test.serial('a registry serving a blob whose digest does not match: E_HASH, and nothing enters the store', async (t) => {
  t.truthy(pushed, 'needs the first push');
  const proxy = await flippingProxy(plain.host);
  try {
    const node = computeNode();
    const r = await node.strata(['pull', `${proxy.host}/team/runtest:v1`]);
    t.is(r.code, 1);
    t.regex(r.stderr, /sha256 mismatch for http:\/\/127\.0\.0\.1:\d+\/v2\/team\/runtest\/blobs\/sha256:/);
    t.regex(r.stderr, /^hint: the registry served bytes the image manifest does not vouch for/m);
    t.true(proxy.flipped() >= 1);
    t.deepEqual(readdirSync(join(node.cache, 'blobs', 'sha256')), []);
    t.deepEqual(existsSync(join(node.cache, 'images')) ? readdirSync(join(node.cache, 'images')).filter((n) => !n.startsWith('.')) : [], []);
  } finally {
    await proxy.close();
  }
});

test.serial('the Bearer token flow: the token for the repository\'s scope, got with the Docker config\'s credentials', async (t) => {
  t.truthy(pushed, 'needs the first push');
  const front = await bearerProxy(plain.host, USER, PASSWORD);
  try {
    const repo = `${front.host}/team/bearer`;
    const good = dockerConfig(front.host, USER, PASSWORD);
    const r = await p.strata(['push', `${repo}:v1`], { env: { DOCKER_CONFIG: good } });
    t.is(r.code, 0, r.stderr);
    t.is(digestLine(r.stdout, repo), pushed.digest);
    t.deepEqual([...new Set(front.scopes)], ['repository:team/bearer:pull,push']);
    const node = computeNode({ DOCKER_CONFIG: good });
    const pulled = await node.strata(['pull', `${repo}:v1`]);
    t.is(pulled.code, 0, pulled.stderr);
    t.is(front.scopes.at(-1), 'repository:team/bearer:pull');
    const anon = await computeNode().strata(['pull', `${repo}:v1`]);
    t.is(anon.code, 1);
    t.regex(anon.stderr, new RegExp(`^error: the registry ${front.host} refused access to team/bearer \\(HTTP 401\\): the token service refused the credentials$`, 'm'));
  } finally {
    await front.close();
  }
});

test.serial('chunked upload: blobs above STRATA_REGISTRY_CHUNK_BYTES go up in PATCH chunks, with the same digest', async (t) => {
  t.truthy(pushed, 'needs the first push');
  const repo = `${plain.host}/team/chunked`;
  const r = await p.strata(['push', `${repo}:v1`], { env: { STRATA_REGISTRY_CHUNK_BYTES: '65536' } });
  t.is(r.code, 0, r.stderr);
  t.is(digestLine(r.stdout, repo), pushed.digest);
  const chunked = [...r.stdout.matchAll(/: pushed (\S+ \S+) in (\d+) chunks$/gm)];
  t.true(chunked.length >= 1 && chunked.every((m) => Number(m[2]) > 1), r.stdout);
  t.is(count(r.stdout, /: pushed /), count(pushed.stdout, /: pushed /));
  const copied = join(p.dir, 'copied-chunked');
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${repo}:v1`, `oci:${copied}:v1`]);
  t.is(layoutDigest(copied), pushed.digest);
});

/**
 * A push of the test's environment to `name` through a droppingProxy in front of the plain registry that cuts
 * `drops` uploads as `o` says: it succeeds, the proxy cut that many, and the image has the first push's digest.
 */
async function pushThrough(t: import('ava').ExecutionContext, name: string, drops: number, o: DropOptions, env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; forwarded: number }> {
  const proxy = await droppingProxy(plain.host, drops, o);
  try {
    const repo = `${proxy.host}/team/${name}`;
    const r = await p.strata(['push', `${repo}:v1`], { env });
    t.is(r.code, 0, r.stderr);
    t.is(proxy.dropped(), drops);
    t.is(digestLine(r.stdout, repo), pushed.digest);
    return { stdout: r.stdout, forwarded: proxy.forwarded() };
  } finally {
    await proxy.close();
  }
}

test.serial('a chunked upload whose PATCH is cut resumes where the registry says it stands; one the registry lost starts again; a PUT whose answer was lost is found landed; all give the same digest', async (t) => {
  t.truthy(pushed, 'needs the first push');
  const chunk = 65536;
  const env = { STRATA_REGISTRY_CHUNK_BYTES: String(chunk), STRATA_HTTP_LOW_SPEED_TIME: '5' };
  // What a push puts on the wire when nothing fails, each byte once.
  const clean = await pushThrough(t, 'clean', 0, {}, env);
  // Cut before the registry sees any of it: the third chunk of the push. The registry still knows its upload.
  const early = await pushThrough(t, 'resumed', 1, { at: 'start', only: 'PATCH', after: 2 }, env);
  const resumed = /: a chunk failed \((.*)\); resuming at byte (\d+) of (\d+)$/m.exec(early.stdout);
  t.truthy(resumed, early.stdout);
  t.log(resumed![0].trim());
  t.is(Number(resumed![2]), 2 * chunk, 'resumed after the two chunks the registry had');
  const copied = join(p.dir, 'copied-resumed');
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${plain.host}/team/resumed:v1`, `oci:${copied}:v1`]);
  t.is(layoutDigest(copied), pushed.digest);
  t.is(early.forwarded, clean.forwarded, 'no chunk was sent twice');
  // The chunk reached the registry and its answer was lost: the reference registry then disowns the offset it
  // gave (its session now holds more than that), so the upload starts again in a new session.
  const late = await pushThrough(t, 'restarted', 1, { at: 'answer', only: 'PATCH', after: 2 }, env);
  const said = /: a chunk failed \(.*\) and the registry lost the upload; starting it again$/m.exec(late.stdout);
  t.truthy(said, late.stdout);
  t.log(said![0].trim());
  // A whole blob in one PUT whose answer was lost: sent again, the session is closed, and the registry has the blob.
  await pushThrough(t, 'answered', 1, { at: 'answer', only: 'PUT' });
});

test.serial('run --image passes the host GPU through when the image asks for it ([gpu] driver = "host"), as run does', async (t) => {
  const gp = await project();
  writeFileSync(join(gp.dir, 'strata.toml'), runManifest(gp.served.url, gp.mirror.keyring, { gpu: true }));
  const repo = `${plain.host}/team/gpu`;
  const r = await gp.strata(['push', `${repo}:v1`]);
  t.is(r.code, 0, r.stderr);
  const node = computeNode();
  const tree = makeFakeGpuTree(join(node.dir, 'gpuhost'));
  const script = 'echo "$NVIDIA_VISIBLE_DEVICES $NVIDIA_DRIVER_CAPABILITIES"; cat /run/opengl-driver/lib/libcuda.so.1; ls /dev | grep -c "^nvidia[0-9]"';
  const withGpu = await runCli(['run', '--image', `${repo}:v1`, '--', 'sh', '-c', script], { cwd: node.dir, env: { STRATA_CACHE_DIR: node.cache, STRATA_DEBIAN_MIRROR: CLOSED_MIRROR, STRATA_GPU_ROOT: tree.root }, timeoutMs: 120_000 });
  t.is(withGpu.code, 0, withGpu.stderr);
  t.is(withGpu.stdout, `all compute,utility\nfake libcuda ${FAKE_DRIVER}\n2\n`);
  const one = await runCli(['run', '--image', `${repo}:v1`, '--gpus', '1', '--', 'sh', '-c', 'echo $NVIDIA_VISIBLE_DEVICES'], { cwd: node.dir, env: { STRATA_CACHE_DIR: node.cache, STRATA_GPU_ROOT: tree.root } });
  t.is(one.stdout, '1\n', one.stderr);
  const none = await runCli(['run', '--image', `${repo}:v1`, '--', 'true'], { cwd: node.dir, env: { STRATA_CACHE_DIR: node.cache, STRATA_GPU_ROOT: join(node.dir, 'no-driver') } });
  t.is(none.code, 1);
  t.regex(none.stderr, /asks for a GPU .* but this host has no NVIDIA driver/);
});
