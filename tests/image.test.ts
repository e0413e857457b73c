/**
 * strata's own container image (Dockerfile.base, `npm run image`) against a private dockerd and the real Debian
 * archive: built from this checkout twice (each build from nothing) to the same image ID by the builder the script
 * chooses, and once by plain `docker build -f Dockerfile.base` when that was not the choice; inside it, --version and
 * --help, lock and realise of the bundled example into a mounted directory with the store on a named volume, giving
 * the digest the host's realise of the same lock gives; push of it to a loopback registry with credentials, giving
 * the digest the host's push gives; strata run in its sandbox; a recipe build in the container; the mirror never
 * taken from the image; and the least privileges the sandbox needs there.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startDockerd } from './helpers/dockerd.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import { runCli } from './helpers/project.ts';
import { dockerConfig, haveRegistry, startRegistry } from './helpers/registry.ts';

const ROOT = resolve(import.meta.dirname, '..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** What the sandbox needs inside a container (found by the privilege steps below; see the README). */
const SANDBOX_OPTS = ['--security-opt', 'seccomp=unconfined', '--security-opt', 'systempaths=unconfined'];

interface Result { code: number; stdout: string; stderr: string }

function sh(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 600_000): Promise<Result> {
  return new Promise((res) => {
    execFile(file, args, { cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      res({ code, stdout, stderr });
    });
  });
}

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function ociDigest(layout: string): string {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  return index.manifests[0]!.digest;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

test.serial('npm run image builds strata in a container, twice to one image ID, and realises in it what the host realises', async (t) => {
  t.timeout(14 * 60_000);
  if (process.getuid?.() !== 0) return void (t.log('skipped: the private dockerd needs root'), t.pass());
  for (const cmd of ['dockerd', 'docker', 'podman', 'skopeo']) {
    if (!has(cmd)) return void (t.log(`skipped: ${cmd} is not installed (scripts/setup-host.sh installs it)`), t.pass());
  }
  if (!haveRegistry()) return void (t.log('skipped: docker-registry is not installed (scripts/setup-host.sh installs it)'), t.pass());
  const m = await debianMirrorOrSkip(t);
  if (!m) return;

  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'strata-image-'));
  const dockerd = await startDockerd();
  const registry = await startRegistry({ auth: { user: 'ci', password: 'in-a-container' } });
  const creds = dockerConfig(registry.host, 'ci', 'in-a-container');
  const volume = `strata-test-cache-${process.pid}`;
  t.teardown(async () => {
    await dockerd.stop();
    await registry.stop();
    rmSync(creds, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  const hostCache = process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'host-cache');
  const buildEnv = { DOCKER_HOST: dockerd.host, STRATA_CACHE_DIR: hostCache, STRATA_IMAGE_TMP: dir, STRATA_DEBIAN_MIRROR: m.url };
  const docker = (args: string[]) => sh('docker', args, { DOCKER_HOST: dockerd.host });
  // The daemon has no bridge network: containers use the host's.
  const strataIn = (project: string, args: string[], opts: string[] = SANDBOX_OPTS) =>
    docker(['run', '--rm', '--network', 'host', ...opts, '-e', `STRATA_DEBIAN_MIRROR=${m.url}`, '-v', `${project}:/work`, '-v', `${volume}:/cache`, 'strata:latest', ...args]);

  // Without an engine the build says so in one line.
  const noEngine = await sh('bash', ['scripts/image.sh'], { ...buildEnv, DOCKER_HOST: `unix://${dir}/none.sock` });
  t.is(noEngine.code, 1);
  t.is(noEngine.stderr, `npm run image: no Docker engine answers at unix://${dir}/none.sock: start one or set DOCKER_HOST\n`);

  // A builder that is neither is refused before anything is built.
  const badBuilder = await sh('bash', ['scripts/image.sh'], { ...buildEnv, STRATA_IMAGE_BUILDER: 'kaniko' });
  t.is(badBuilder.code, 1);
  t.regex(badBuilder.stderr, /npm run image: STRATA_IMAGE_BUILDER must be docker or podman, not "kaniko"\n$/);

  let since = Date.now();
  const first = await sh('npm', ['run', '-s', 'image'], buildEnv);
  t.is(first.code, 0, first.stderr);
  const line = /^strata:latest strata:(\S+) (sha256:[0-9a-f]{64})$/m.exec(first.stdout);
  t.truthy(line, first.stdout);
  const id = line![2]!;
  t.is(line![1], VERSION);
  // The script says which builder it took and why, in one line (podman with this host's Docker 20.10 and no buildx).
  const choice = /^npm run image: \[[\d:]+\] builder: (docker|podman) \((.+)\)$/m.exec(first.stderr);
  t.truthy(choice, first.stderr);
  const builder = choice![1]!;
  t.log(`first build: ${id} in ${seconds(since)}; builder: ${builder} (${choice![2]})`);
  for (const ref of ['strata:latest', `strata:${VERSION}`]) {
    const inspect = await docker(['image', 'inspect', '--format', '{{.Id}} {{json .Config.Entrypoint}} {{.Config.WorkingDir}}', ref]);
    t.is(inspect.stdout, `${id} ["/opt/strata/bin/strata"] /work\n`, ref);
  }

  const version = await docker(['run', '--rm', '--network', 'none', 'strata:latest', '--version']);
  t.is(version.stdout, `${VERSION}\n`, version.stderr);
  const help = await docker(['run', '--rm', '--network', 'none', 'strata:latest', '--help']);
  t.regex(help.stdout, /^Usage: strata /m, help.stderr);
  t.regex(help.stdout, /realise/);
  const user = await docker(['run', '--rm', '--network', 'none', '--user', 'strata', '--entrypoint', 'sh', 'strata:latest', '-c', 'id; stat -c "%U %a" /cache /home/strata; ls -A /etc/apt']);
  t.is(user.stdout, 'uid=1000(strata) gid=1000(strata) groups=1000(strata)\nstrata 755\nstrata 755\napt.conf.d\ntrusted.gpg.d\n', user.stderr);

  // The image has no apt sources, so a channel without url and no STRATA_DEBIAN_MIRROR is an error, never a mirror
  // taken from the image.
  const example = join(dir, 'example');
  mkdirSync(example);
  copyFileSync(join(ROOT, 'examples/numpy/strata.toml'), join(example, 'strata.toml'));
  const noMirror = await docker(['run', '--rm', '--network', 'host', '-v', `${example}:/work`, 'strata:latest', 'lock']);
  t.is(noMirror.code, 1, noMirror.stderr);
  t.regex(noMirror.stderr, /channel "stable" has no url, STRATA_DEBIAN_MIRROR is not set, and the host has no apt sources/);

  // The least privileges for the sandbox (bubblewrap, as strata's generated layer and recipe builds use it), as
  // root and as the image's user: Docker's seccomp profile refuses new namespaces without CAP_SYS_ADMIN; with it
  // lifted, a fresh /proc cannot be mounted over the one whose paths Docker masks; with both, it works.
  const bwrap = ['--entrypoint', 'bwrap', 'strata:latest', '--unshare-all', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', 'true'];
  for (const u of ['root', 'strata']) {
    const plain = await docker(['run', '--rm', '--network', 'none', '--user', u, ...bwrap]);
    t.regex(plain.stderr, /No permissions to create a new namespace/, u);
    const seccomp = await docker(['run', '--rm', '--network', 'none', '--user', u, ...SANDBOX_OPTS.slice(0, 2), ...bwrap]);
    t.regex(seccomp.stderr, /Can't mount proc on \/proc: Operation not permitted/, u);
    const both = await docker(['run', '--rm', '--network', 'none', '--user', u, ...SANDBOX_OPTS, ...bwrap]);
    t.is(both.code, 0, `${u}: ${both.stderr}`);
  }

  // lock and realise the bundled example in the container, the store on a named volume: the README's commands
  // (lock with no privileges, realise with the sandbox's two).
  since = Date.now();
  const lock = await strataIn(example, ['lock'], []);
  t.is(lock.code, 0, lock.stderr);
  const realise = await strataIn(example, ['realise', '--oci', 'out']);
  t.is(realise.code, 0, realise.stderr);
  const inside = ociDigest(join(example, 'out'));
  t.log(`in the container: lock and realise ${seconds(since)}, ${inside}`);
  since = Date.now();
  const host = await runCli(['realise', '--locked', '--oci', join(dir, 'host-out')], { cwd: example, env: { STRATA_CACHE_DIR: hostCache, STRATA_DEBIAN_MIRROR: m.url }, timeoutMs: 540_000 });
  t.is(host.code, 0, host.stderr);
  t.is(ociDigest(join(dir, 'host-out')), inside, 'the host realises the container\'s lock to the same image');
  t.log(`on the host: realise ${seconds(since)}, ${ociDigest(join(dir, 'host-out'))}`);

  // push from the container (no privileges: the environment is realised in the volume), the credentials read from a
  // mounted Docker config; the host's push of the same lock gives the same manifest, and the registry serves it.
  since = Date.now();
  const repo = `${registry.host}/team/numpy`;
  const pushed = await strataIn(example, ['push', repo], ['-v', `${creds}:/docker:ro`, '-e', 'DOCKER_CONFIG=/docker']);
  t.is(pushed.code, 0, pushed.stderr);
  const pushedRef = new RegExp(`^${escape(repo)}@(sha256:[0-9a-f]{64})$`, 'm').exec(pushed.stdout)?.[1];
  const pushedTag = new RegExp(`^${escape(repo)}:(\\S+)$`, 'm').exec(pushed.stdout)?.[1];
  t.truthy(pushedRef && pushedTag, pushed.stdout);
  const hostPush = await runCli(['push', '--locked', repo], { cwd: example, env: { STRATA_CACHE_DIR: hostCache, STRATA_DEBIAN_MIRROR: m.url, DOCKER_CONFIG: creds }, timeoutMs: 300_000 });
  t.is(hostPush.code, 0, hostPush.stderr);
  t.regex(hostPush.stdout, /^0 blobs pushed \(0 B\), \d+ already there$/m, 'the host pushes nothing the container has not');
  t.is(new RegExp(`^${escape(repo)}@(sha256:[0-9a-f]{64})$`, 'm').exec(hostPush.stdout)?.[1], pushedRef, 'the host pushes the container\'s manifest');
  const served = await sh('skopeo', ['inspect', '--tls-verify=false', '--creds', 'ci:in-a-container', '--format', '{{.Digest}}', `docker://${repo}:${pushedTag}`], {});
  t.is(served.stdout.trim(), String(pushedRef), served.stderr);
  t.log(`push from the container and from the host: ${repo}:${pushedTag}@${pushedRef}, ${seconds(since)}`);

  // strata run in the container: the sandbox (bubblewrap in a user namespace, as root there too) with the same two
  // options as realise, no capability added.
  since = Date.now();
  const ran = await strataIn(example, ['run', '--', 'python3', '-c', 'print(1)']);
  t.is(ran.code, 0, ran.stderr);
  t.is(ran.stdout, '1\n', ran.stderr);
  t.regex(ran.stderr, /using the sandbox backend/);
  t.log(`strata run in the container: ${seconds(since)}`);

  // A recipe build in the container's sandbox, its source a file in the mounted project.
  since = Date.now();
  const recipe = join(dir, 'recipe');
  mkdirSync(join(recipe, 'src/greet-1.0'), { recursive: true });
  writeFileSync(join(recipe, 'src/greet-1.0/greeting.txt'), 'hello from a recipe built in strata\'s container\n');
  execFileSync('tar', ['-C', join(recipe, 'src'), '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-czf', join(recipe, 'greet-1.0.tar.gz'), 'greet-1.0']);
  rmSync(join(recipe, 'src'), { recursive: true });
  const sha256 = createHash('sha256').update(readFileSync(join(recipe, 'greet-1.0.tar.gz'))).digest('hex');
  writeFileSync(
    join(recipe, 'strata.toml'),
    [
      '[project]', 'name = "recipe-in-container"', 'arch = "amd64"', '',
      '[channels.stable]', 'suite = "trixie"', '',
      '[packages]', 'dpkg = "*"', '',
      '[recipes.greet]', 'version = "1.0"',
      `source = { url = "file:///work/greet-1.0.tar.gz", sha256 = "${sha256}" }`,
      'build = ["mkdir -p $PREFIX/share/greet", "cp greeting.txt $PREFIX/share/greet/"]', '',
    ].join('\n'),
  );
  const recipeLock = await strataIn(recipe, ['lock']);
  t.is(recipeLock.code, 0, recipeLock.stderr);
  const built = await strataIn(recipe, ['realise', '--locked', '--oci', 'out']);
  t.is(built.code, 0, built.stderr);
  t.regex(built.stderr + built.stdout, /built recipe greet 1\.0 in .*: 1 files under \/usr\/local/);
  t.log(`recipe in the container: ${seconds(since)}`);

  // The second build by the same builder starts from nothing (podman: a fresh storage; nothing of the first build's
  // layers is reused) and gives the same ID.
  since = Date.now();
  const second = await sh('npm', ['run', '-s', 'image'], { ...buildEnv, STRATA_IMAGE_LOAD: '0' });
  t.is(second.code, 0, second.stderr);
  t.is(/sha256:[0-9a-f]{64}$/m.exec(second.stdout)?.[0], id, second.stdout);
  t.log(`second build: the same ID in ${seconds(since)}`);

  // Plain `docker build -f Dockerfile.base` on the base that `realise --load` put in the engine, when the script did
  // not choose docker itself: it works (on an engine without BuildKit it is not reproducible, and says so), and the
  // strata it holds realises the example to the same digest.
  if (builder === 'podman') {
    since = Date.now();
    const plain = await sh('npm', ['run', '-s', 'image'], { ...buildEnv, STRATA_IMAGE_BUILDER: 'docker' });
    t.is(plain.code, 0, plain.stderr);
    t.regex(plain.stderr, /^npm run image: \[[\d:]+\] builder: docker \(STRATA_IMAGE_BUILDER=docker\)/m);
    t.regex(plain.stderr, /^npm run image: \[[\d:]+\] (docker build -f Dockerfile\.base|docker buildx build -f Dockerfile\.base --load, SOURCE_DATE_EPOCH=\d+)$/m);
    const dockerId = /^strata:latest strata:\S+ (sha256:[0-9a-f]{64})$/m.exec(plain.stdout)?.[1];
    t.truthy(dockerId, plain.stdout);
    const history = await docker(['image', 'inspect', '--format', '{{.Id}} {{json .Config.Entrypoint}} {{.Config.WorkingDir}}', 'strata:latest']);
    t.is(history.stdout, `${dockerId} ["/opt/strata/bin/strata"] /work\n`);
    const v = await docker(['run', '--rm', '--network', 'none', 'strata:latest', '--version']);
    t.is(v.stdout, `${VERSION}\n`, v.stderr);
    const h = await docker(['run', '--rm', '--network', 'none', 'strata:latest', '--help']);
    t.regex(h.stdout, /^Usage: strata /m, h.stderr);
    const owners = await docker(['run', '--rm', '--network', 'none', '--entrypoint', 'stat', 'strata:latest', '-c', '%n %U %a', '/cache', '/home/strata', '/work']);
    t.is(owners.stdout, '/cache strata 755\n/home/strata strata 755\n/work root 755\n', owners.stderr);
    const again = await strataIn(example, ['realise', '--oci', 'out-docker-built']);
    t.is(again.code, 0, again.stderr);
    t.is(ociDigest(join(example, 'out-docker-built')), inside, 'the docker-built strata realises the same image');
    t.log(`docker build -f Dockerfile.base: ${dockerId} in ${seconds(since)} (with --version, --help and a realise)`);
  } else t.log('the script chose docker build itself: the first two builds were plain docker builds');
  t.log(`the whole test ${seconds(started)}`);
  await docker(['volume', 'rm', '-f', volume]);
});

test('the base lock is up to date with base/strata.toml', async (t) => {
  const check = await runCli(['lock', '--check', '-m', join(ROOT, 'base/strata.toml')], { cwd: ROOT, env: { STRATA_CACHE_DIR: join(tmpdir(), `strata-base-check-${process.pid}`) } });
  t.is(check.code, 0, check.stderr);
  t.regex(check.stdout + check.stderr, /base\/strata\.lock is up to date \(\d+ packages\)/);
});
