/**
 * A recipe's sources on the host side: the deterministic tar of a git tree (what the lock pins a git source by),
 * and unpacking a verified source file into the build's source tree.
 *
 * Unpacking is safe against a hostile archive (the bytes are pinned by sha256, but pinned bytes can still be
 * malicious): only regular files and directories are written while the archive is read, each at a normalised
 * relative path below the tree, never below a symlink or a non-directory; hardlinks (to files of the same
 * archive) and then symlinks are made only after every file is written, so nothing is ever written through a
 * link; device nodes and FIFOs are skipped; setuid/setgid bits are dropped. The modes and mtimes of the archive
 * are kept (build tools compare mtimes).
 */
import { execFile, spawn } from 'node:child_process';
import { constants as fsConstants, createReadStream } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, open, readdir, readlink, rename, rm, symlink, utimes } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, posix, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import tarStream from 'tar-stream';
import { StrataError } from '../errors.ts';
import { writeLayerTar, type LayerEntry } from '../realiser/layertar.ts';
import type { TarHeader } from '../util/tarHeader.ts';
import type { Store } from '../store/store.ts';
import type { Reporter } from '../report/reporter.ts';

const run = promisify(execFile);

/** A git source's repository as git is given it: a URL as written, a path relative to the project directory. */
export function gitLocation(repo: string, projectDir: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) || /^[^/]+@[^/:]+:/.test(repo)) return repo;
  return isAbsolute(repo) ? repo : resolve(projectDir, repo);
}

function gitEnv(home: string): NodeJS.ProcessEnv {
  // Neither the user's nor the system's git configuration (filters, rewrites, LFS) may change the tree.
  // How to reach the repository (ssh agent, proxies) still comes from the environment.
  const reach = ['GIT_SSH_COMMAND', 'SSH_AUTH_SOCK', 'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY'];
  const passed = Object.fromEntries(reach.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]!]));
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C', ...passed };
}

const GIT_OPTS = ['-c', 'core.autocrlf=false', '-c', 'core.symlinks=true', '-c', 'protocol.file.allow=always', '-c', 'advice.detachedHead=false', '-c', 'init.defaultBranch=strata'];

/**
 * Checks out `rev` of `repo` with the host's git in a scratch directory and writes the deterministic tar of its
 * tree (strata's layer tar: entries sorted, owner root, mtime 0, modes 0644/0755, symlinks as they are, no .git;
 * submodules are left out) into the store. Returns its sha256 and path. E_FETCH when git cannot get the commit.
 */
export async function gitTreeTar(o: { repo: string; rev: string; projectDir: string; store: Store; reporter: Reporter; label: string }): Promise<{ sha256: string; path: string }> {
  const where = gitLocation(o.repo, o.projectDir);
  const tmp = await o.store.tmpDir();
  try {
    const work = join(tmp, 'tree');
    const env = gitEnv(tmp);
    const git = (args: string[], cwd = work) => run('git', [...GIT_OPTS, ...args], { cwd, env, maxBuffer: 256 << 20, encoding: 'buffer' });
    await mkdir(work);
    try {
      await git(['init', '-q']);
      try {
        await git(['fetch', '-q', '--depth', '1', where, o.rev]);
      } catch {
        // A server that does not serve a commit by its id (or an old git): fetch everything, then pick the commit.
        await git(['fetch', '-q', where, '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*']);
      }
      await git(['checkout', '-q', '--detach', o.rev]);
    } catch (e) {
      const err = e as { stderr?: Buffer; code?: string; message: string };
      if (err.code === 'ENOENT') throw new StrataError('E_FETCH', `${o.label}: git is not installed on this host`, 'install git: a git source is fetched with the host\'s git');
      const why = (err.stderr?.toString('utf8') ?? err.message).trim().split('\n').slice(-3).join('; ');
      throw new StrataError('E_FETCH', `${o.label}: cannot get commit ${o.rev} from ${o.repo}: ${why}`, 'check the repository address and that the commit exists there (a full 40-hex id)');
    }
    const head = (await git(['rev-parse', 'HEAD'])).stdout.toString('utf8').trim();
    if (head !== o.rev) throw new StrataError('E_FETCH', `${o.label}: ${o.repo} checked out ${head}, not the commit ${o.rev} asked for`);
    const listing = (await git(['ls-tree', '-r', '-z', '--full-tree', 'HEAD'])).stdout.toString('utf8');
    const entries: LayerEntry[] = [];
    let submodules = 0;
    for (const item of listing.split('\0')) {
      if (item === '') continue;
      const m = /^(\d+) (\w+) [0-9a-f]+\t(.+)$/s.exec(item);
      if (!m) continue;
      const [, mode, type, path] = m;
      if (type === 'commit') {
        submodules++;
        continue;
      }
      const abs = join(work, path!);
      if (mode === '120000') entries.push({ path: path!, type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: await readlink(abs) });
      else entries.push({ path: path!, type: 'file', mode: mode === '100755' ? 0o755 : 0o644, uid: 0, gid: 0, source: abs });
    }
    if (submodules > 0) o.reporter.warn(`${o.label}: ${submodules} git submodule${submodules === 1 ? ' is' : 's are'} left out of the tree; add each as a source of its own (with dest) if the build needs it`);
    const tarPath = join(tmp, 'tree.tar');
    const res = await writeLayerTar(entries, tarPath, { mtime: 0 });
    const sha256 = res.diffId.slice('sha256:'.length);
    return { sha256, path: await o.store.adopt(tarPath, sha256) };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

type Format = 'gzip' | 'xz' | 'bzip2' | 'zstd' | 'tar' | 'file';

async function sniff(file: string): Promise<Format> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(512);
    const { bytesRead } = await fh.read(b, 0, 512, 0);
    const h = b.subarray(0, bytesRead);
    if (h[0] === 0x1f && h[1] === 0x8b) return 'gzip';
    if (h.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    if (h.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
    if (h.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    if (bytesRead >= 262 && h.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
    return 'file';
  } finally {
    await fh.close();
  }
}

/** The decompressed bytes of `file` and a promise of the decompressor's verdict. */
function decompressed(file: string, format: Exclude<Format, 'file'>, label: string): { out: Readable; done: Promise<void>; abort(): void } {
  const raw = createReadStream(file, { highWaterMark: 1 << 20 });
  if (format === 'tar') return { out: raw, done: Promise.resolve(), abort: () => raw.destroy() };
  if (format === 'gzip' || format === 'zstd') {
    const z = format === 'gzip' ? createGunzip() : createZstdDecompress();
    raw.pipe(z);
    const done = new Promise<void>((ok, fail) => {
      z.once('end', ok);
      z.once('error', (e) => fail(new StrataError('E_BUILD', `${label}: corrupt ${format} data: ${e.message}`)));
    });
    done.catch(() => {});
    return { out: z, done, abort: () => (raw.destroy(), z.destroy()) };
  }
  const child = spawn(format === 'xz' ? 'xz' : 'bzip2', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-1000)));
  child.stdin.on('error', () => {});
  raw.pipe(child.stdin);
  let aborted = false;
  const done = new Promise<void>((ok, fail) => {
    child.once('error', (e: NodeJS.ErrnoException) => fail(e.code === 'ENOENT' ? new StrataError('E_BUILD', `${label}: cannot decompress it: the ${format} program is not installed`, `install ${format === 'xz' ? 'xz-utils' : 'bzip2'}`) : e));
    child.once('close', (code) => (code === 0 || aborted ? ok() : fail(new StrataError('E_BUILD', `${label}: corrupt ${format} data: ${stderr.trim() || `exit ${code}`}`))));
  });
  done.catch(() => {});
  return { out: child.stdout, done, abort: () => ((aborted = true), raw.destroy(), child.kill('SIGKILL')) };
}

function memberPath(raw: string, label: string): string {
  let p = raw.replace(/\/+$/, '');
  while (p.startsWith('./')) p = p.slice(2);
  if (p === '' || p === '.') return '';
  const norm = posix.normalize(p);
  if (p.startsWith('/') || p.includes('\0') || norm !== p || p.split('/').includes('..')) {
    throw new StrataError('E_BUILD', `${label}: the archive holds an unsafe path ${JSON.stringify(raw)} (absolute, with "..", or not normalised)`);
  }
  return p;
}

/**
 * Unpacks a source file into `dest` (a directory below the source tree, created when missing): a tar (plain,
 * gzip, xz, bzip2 or zstd) is unpacked, dropping its single top-level directory when it has one and `strip` is
 * set (as upstream tarballs have); any other file is copied in under its URL's name.
 */
export async function unpackSource(file: string, tree: string, destRel: string, o: { label: string; name: string; strip: boolean }): Promise<void> {
  const format = await sniff(file);
  const dest = await directoryIn(tree, destRel, o.label);
  if (format === 'file') {
    const target = join(dest, o.name);
    if (await lstat(target).catch(() => undefined)) throw new StrataError('E_BUILD', `${o.label}: ${o.name} is already in the source tree (from another source)`);
    await writeCopy(file, target);
    return;
  }
  const stage = join(dirname(dest), `.unpack-${basename(dest)}-${process.pid}`);
  await rm(stage, { recursive: true, force: true });
  await mkdir(stage);
  try {
    await extractTar(file, format, stage, o.label);
    let from = stage;
    if (o.strip) {
      const top = await readdir(stage);
      if (top.length === 1 && (await lstat(join(stage, top[0]!))).isDirectory()) from = join(stage, top[0]!);
    }
    await moveInto(from, dest, o.label, '');
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/**
 * The directory `rel` below `tree`, made when missing; each part must be a real directory (an earlier source may
 * have put a symlink there, and nothing is ever written through one).
 */
async function directoryIn(tree: string, rel: string, label: string): Promise<string> {
  let at = tree;
  for (const part of rel.split('/').filter(Boolean)) {
    at = join(at, part);
    const st = await lstat(at).catch(() => undefined);
    if (!st) await mkdir(at);
    else if (!st.isDirectory()) throw new StrataError('E_BUILD', `${label}: its dest ${rel} runs into ${part}, which an earlier source made a ${st.isSymbolicLink() ? 'symlink' : 'file'}`);
  }
  return at;
}

async function writeCopy(from: string, to: string): Promise<void> {
  await copyFile(from, to, fsConstants.COPYFILE_EXCL);
  await chmod(to, 0o644);
}

/** Moves every entry of `from` into `to`, merging directories; a path both hold (not two directories) is refused. */
async function moveInto(from: string, to: string, label: string, rel: string): Promise<void> {
  for (const name of (await readdir(from)).sort()) {
    const src = join(from, name);
    const dst = join(to, name);
    const there = await lstat(dst).catch(() => undefined);
    if (!there) {
      await rename(src, dst);
      continue;
    }
    const here = await lstat(src);
    if (there.isDirectory() && here.isDirectory()) await moveInto(src, dst, label, posix.join(rel, name));
    else throw new StrataError('E_BUILD', `${label}: ${posix.join(rel, name)} is already in the source tree (from another source)`, 'give one of the sources its own dest = "subdirectory"');
  }
}

async function extractTar(file: string, format: Exclude<Format, 'file'>, root: string, label: string): Promise<void> {
  const dec = decompressed(file, format, label);
  const extract = tarStream.extract();
  let parseError: Error | undefined;
  extract.on('error', (e: Error) => (parseError ??= e));
  dec.out.once('error', (e) => extract.destroy(e));
  dec.out.pipe(extract);
  const kinds = new Map<string, 'dir' | 'file' | 'link'>();
  const links: { path: string; target: string; hard: boolean }[] = [];
  const times: { path: string; mtime: Date; mode?: number }[] = [];
  const ensureParents = async (path: string) => {
    const parts = path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      const k = kinds.get(p);
      if (k === 'dir') continue;
      if (k !== undefined) throw new StrataError('E_BUILD', `${label}: the archive writes ${path} below ${p}, which is not a directory`);
      await mkdir(join(root, p), { mode: 0o755 });
      kinds.set(p, 'dir');
    }
  };
  try {
    for await (const entry of extract) {
      const h = entry.header as unknown as TarHeader;
      const path = memberPath(h.name, label);
      const body = entry as unknown as AsyncIterable<Buffer> & { resume(): void };
      if (path === '' || h.type === 'pax-header' || h.type === 'pax-global-header') {
        body.resume();
        continue;
      }
      const mtime = h.mtime ?? new Date(0);
      if (h.type === 'directory') {
        await ensureParents(path);
        if (kinds.get(path) === undefined) {
          await mkdir(join(root, path), { mode: 0o755 });
          kinds.set(path, 'dir');
        } else if (kinds.get(path) !== 'dir') throw new StrataError('E_BUILD', `${label}: the archive holds ${path} as a directory and as something else`);
        times.push({ path, mtime, mode: (h.mode & 0o777) | 0o700 });
        body.resume();
      } else if (h.type === 'file' || h.type === 'contiguous-file') {
        await ensureParents(path);
        if (kinds.has(path)) throw new StrataError('E_BUILD', `${label}: the archive holds ${path} twice`);
        kinds.set(path, 'file');
        const fh = await open(join(root, path), 'wx', (h.mode & 0o777) | 0o600);
        try {
          for await (const chunk of body) await fh.write(chunk);
        } finally {
          await fh.close();
        }
        await chmod(join(root, path), (h.mode & 0o777) | 0o600);
        times.push({ path, mtime });
      } else if (h.type === 'symlink' || h.type === 'link') {
        await ensureParents(path);
        if (kinds.has(path)) throw new StrataError('E_BUILD', `${label}: the archive holds ${path} twice`);
        kinds.set(path, 'link');
        const target = h.type === 'link' ? memberPath(h.linkname ?? '', label) : (h.linkname ?? '');
        links.push({ path, target, hard: h.type === 'link' });
        body.resume();
      } else {
        body.resume(); // device nodes, FIFOs: not part of a source tree
      }
    }
    await dec.done;
  } catch (e) {
    dec.abort();
    if (e instanceof StrataError) throw e;
    if ((e as NodeJS.ErrnoException).syscall !== undefined) throw e;
    throw new StrataError('E_BUILD', `${label}: not a readable tar archive: ${(parseError ?? (e as Error)).message}`);
  }
  // Hardlinks first (to regular files of this archive), then symlinks: nothing is written through a link.
  for (const l of links.filter((x) => x.hard)) {
    if (kinds.get(l.target) !== 'file') throw new StrataError('E_BUILD', `${label}: hardlink ${l.path} points at ${l.target}, which is not a file of the archive`);
    await link(join(root, l.target), join(root, l.path));
  }
  for (const l of links.filter((x) => !x.hard)) await symlink(l.target, join(root, l.path));
  for (const t of times.reverse()) {
    if (t.mode !== undefined) await chmod(join(root, t.path), t.mode);
    await utimes(join(root, t.path), t.mtime, t.mtime);
  }
}
