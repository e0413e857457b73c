/**
 * Reads and validates `strata.toml`. Every mistake is reported as `file:line:column: message`.
 */
import { resolve } from 'node:path';
import { arch as nodeArch } from 'node:os';
import TOML from '@iarna/toml';
import { StrataError } from '../errors.ts';
import { parseConstraint } from '../debian/relation.ts';
import { BLAS_NAMES, blasPackages, isBlasName, type BlasName } from '../debian/blas.ts';
import { MAX_MANIFEST_BYTES } from '../limits.ts';
import { readBoundedSync } from '../store/readBounded.ts';
import { ManifestReader, ENV_NAME, ENV_NAME_RULE, type Table } from './reader.ts';
import { parseRecipes } from './recipes.ts';
import type { ChannelSpec, ImageSettings, Manifest, PackageRequest } from '../model.ts';
import { sha256Hex } from '../util/bytes.ts';

export { locateKey } from './reader.ts';

/** The host's Debian architecture name. */
export function hostArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: 'i386', arm: 'armhf', ppc64: 'ppc64el', s390x: 's390x', riscv64: 'riscv64' };
  return map[nodeArch()] ?? nodeArch();
}

const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/**
 * `KEY=VALUE` assignments from the command line (`strata run -e`), held to the same rule as the manifest's `[env]`:
 * a valid name, and no NUL (which no environment can carry). Throws E_USAGE naming the entry.
 */
export function parseEnvAssignments(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i < 0) throw new StrataError('E_USAGE', `--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
    const name = kv.slice(0, i);
    if (!ENV_NAME.test(name)) {
      throw new StrataError('E_USAGE', `--env ${JSON.stringify(kv)}: ${JSON.stringify(name)} is not a valid environment variable name (${ENV_NAME_RULE})`);
    }
    if (kv.includes('\0')) throw new StrataError('E_USAGE', `--env ${JSON.stringify(kv)}: the value contains a NUL character`);
    out[name] = kv.slice(i + 1);
  }
  return out;
}

export function loadManifest(file: string): Manifest {
  const path = resolve(file);
  let bytes: Buffer;
  try {
    bytes = readBoundedSync(path, MAX_MANIFEST_BYTES);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new StrataError(
      'E_MANIFEST',
      code === 'ENOENT' ? `no manifest at ${path}` : `cannot read ${path}: ${(e as Error).message}`,
      code === 'ENOENT' ? 'create a strata.toml (see the README\'s manifest reference) or pass --manifest PATH' : undefined,
    );
  }
  return parseManifest(bytes.toString('utf8'), path, sha256Hex(bytes));
}

export function parseManifest(source: string, path: string, sha256: string): Manifest {
  const r: ManifestReader = new ManifestReader(path, source);
  let doc: Table;
  try {
    doc = TOML.parse(source) as Table;
  } catch (e) {
    const err = e as Error & { line?: number; col?: number };
    const first = err.message.split('\n')[0] ?? err.message;
    const where = err.line !== undefined ? `${err.line + 1}:${(err.col ?? 0) + 1}` : '1:1';
    throw new StrataError('E_MANIFEST', `${path}:${where}: TOML syntax error: ${first.replace(/ at row \d+, col \d+, pos \d+:?$/, '')}`);
  }
  r.onlyKeys(doc, [], ['project', 'channels', 'packages', 'gpu', 'image', 'env', 'alternatives', 'shell', 'develop', 'resolve', 'recipes', 'cache']);

  const project = r.table(doc, [], 'project', true)!;
  r.onlyKeys(project, ['project'], ['name', 'arch']);
  const name = r.string(project, ['project'], 'name');
  if (!name) r.fail(['project'], undefined, 'project.name is required');
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) {
    r.fail(['project'], 'name', `project.name "${name}" must be lower-case letters, digits, '.', '_' or '-' (it names the image)`);
  }
  const arch = r.string(project, ['project'], 'arch') ?? hostArch();

  const channelsTable = r.table(doc, [], 'channels', true)!;
  const channels: ChannelSpec[] = [];
  for (const cname of Object.keys(channelsTable)) {
    const c = r.table(channelsTable, ['channels'], cname)!;
    const p = ['channels', cname];
    r.onlyKeys(c, p, ['url', 'urls', 'suite', 'components', 'signed-by', 'trusted', 'check-valid-until', 'snapshot', 'snapshot-url', 'snapshot-archive']);
    const suite = r.string(c, p, 'suite');
    if (!suite) r.fail(p, undefined, `channel "${cname}" needs a suite (e.g. suite = "trixie")`);
    const urls = [...(r.strings(c, p, 'url') ?? []), ...(r.strings(c, p, 'urls') ?? [])];
    for (const u of urls) {
      if (!/^(https?|file):\/\//.test(u)) r.fail(p, c.url !== undefined ? 'url' : 'urls', `channel "${cname}": "${u}" is not an http(s):// or file:// URL`);
    }
    const spec: ChannelSpec = {
      name: cname,
      urls: urls.map((u) => u.replace(/\/+$/, '')),
      suite,
      components: r.strings(c, p, 'components') ?? (suite?.endsWith('/') ? [] : ['main']),
      trusted: r.bool(c, p, 'trusted') ?? false,
      checkValidUntil: r.bool(c, p, 'check-valid-until') ?? true,
    };
    if (suite?.endsWith('/')) {
      // A flat repository (suite "/" or "sub/"): no dists/, no components, and never a Debian mirror by default.
      if (spec.components.length > 0) r.fail(p, 'components', `channel "${cname}": suite = "${suite}" is a flat repository, which has no components: leave components out`);
      if (urls.length === 0) r.fail(p, 'suite', `channel "${cname}": suite = "${suite}" is a flat repository, which needs its url (e.g. url = "https://<the vendor's repository>/debian12/x86_64")`);
      if (c.snapshot !== undefined) r.fail(p, 'snapshot', `channel "${cname}": a flat repository cannot be read from a Debian snapshot archive`);
    }
    const snapshot = r.string(c, p, 'snapshot');
    const snapshotUrls = r.strings(c, p, 'snapshot-url') ?? [];
    const snapshotArchive = r.string(c, p, 'snapshot-archive');
    if (snapshot !== undefined) {
      if (snapshot !== 'latest' && !/^\d{8}T\d{6}Z$/.test(snapshot)) r.fail(p, 'snapshot', `channel "${cname}": snapshot = "${snapshot}" is not a time like "20261121T091544Z" (UTC) or "latest"`);
      for (const u of snapshotUrls) if (!/^(https?|file):\/\//.test(u)) r.fail(p, 'snapshot-url', `channel "${cname}": "${u}" is not an http(s):// or file:// URL`);
      if (snapshotArchive !== undefined && !/^[a-z0-9][a-z0-9._-]*$/.test(snapshotArchive)) r.fail(p, 'snapshot-archive', `channel "${cname}": "${snapshotArchive}" is not an archive name like "debian"`);
      spec.snapshot = { timestamp: snapshot, urls: snapshotUrls.map((u) => u.replace(/\/+$/, '')), archive: snapshotArchive ?? 'debian' };
    } else if (snapshotUrls.length > 0 || snapshotArchive !== undefined) {
      r.fail(p, snapshotUrls.length > 0 ? 'snapshot-url' : 'snapshot-archive', `channel "${cname}": snapshot-url and snapshot-archive go with snapshot = "<time>"`);
    }
    const signedBy = r.string(c, p, 'signed-by');
    if (signedBy !== undefined) spec.signedBy = resolve(path, '..', signedBy);
    channels.push(spec);
  }
  if (channels.length === 0) r.fail(['channels'], undefined, 'at least one channel is required');
  const channelNames = channels.map((c) => c.name);

  const packagesTable = r.table(doc, [], 'packages', true)!;
  const packages: PackageRequest[] = [];
  for (const [pname, v] of Object.entries(packagesTable)) {
    if (!PACKAGE_NAME.test(pname)) r.fail(['packages'], pname, `"${pname}" is not a valid Debian package name`);
    const req: PackageRequest = { name: pname };
    let constraintText: string | undefined;
    if (typeof v === 'string') {
      constraintText = v;
    } else if (typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)) {
      const t = v as Table;
      const p = ['packages', pname];
      r.onlyKeys(t, p, ['version', 'channel']);
      constraintText = r.string(t, p, 'version');
      const ch = r.string(t, p, 'channel');
      if (ch !== undefined) {
        if (!channelNames.includes(ch)) r.fail(['packages'], pname, `package "${pname}" asks for channel "${ch}", which is not declared`, `declared channels: ${channelNames.join(', ')}`);
        req.channel = ch;
      }
    } else {
      r.fail(['packages'], pname, `packages.${pname} must be a version string like "*" or ">= 1.2", or a table { version = ..., channel = ... }`);
    }
    if (constraintText !== undefined) {
      try {
        const c = parseConstraint(constraintText);
        if (c) req.constraint = c;
      } catch (e) {
        r.fail(['packages'], pname, `packages.${pname}: ${(e as Error).message}`);
      }
    }
    packages.push(req);
  }
  if (packages.length === 0) r.fail(['packages'], undefined, '[packages] is empty: name at least one package');

  const image: ImageSettings = { env: {}, alternatives: {} };
  const gpu = r.table(doc, [], 'gpu');
  if (gpu) {
    r.onlyKeys(gpu, ['gpu'], ['driver']);
    const d = r.string(gpu, ['gpu'], 'driver');
    if (d !== undefined && d !== 'host') r.fail(['gpu'], 'driver', `gpu.driver must be "host" (the only supported source of the NVIDIA driver)`);
    if (d === 'host') image.gpuDriver = 'host';
  }
  const env = r.table(doc, [], 'env');
  if (env) {
    for (const k of Object.keys(env)) {
      const v = r.string(env, ['env'], k)!;
      if (!ENV_NAME.test(k)) r.fail(['env'], k, `"${k}" is not a valid environment variable name (${ENV_NAME_RULE})`);
      if (v.includes('\0')) r.fail(['env'], k, `env.${k} contains a NUL character, which no environment variable can hold`);
      image.env[k] = v;
    }
  }
  const imageT = r.table(doc, [], 'image');
  if (imageT) {
    r.onlyKeys(imageT, ['image'], ['entrypoint', 'cmd']);
    const ep = r.strings(imageT, ['image'], 'entrypoint');
    const cmd = r.strings(imageT, ['image'], 'cmd');
    // What runs is entrypoint + cmd: its first word names the program, so it cannot be empty.
    for (const [key, list] of [['entrypoint', ep], ['cmd', cmd]] as const) {
      if (list === undefined) continue;
      if (list.length === 0) r.fail(['image'], key, `image.${key} is empty`, `leave ${key} out for none, or name a program: ${key} = ["python3"]`);
      const nul = list.findIndex((a) => a.includes('\0'));
      if (nul >= 0) r.fail(['image'], key, `image.${key}[${nul}] contains a NUL character, which no program argument can hold`);
      if (list[0] === '' && (key === 'entrypoint' || ep === undefined)) {
        r.fail(['image'], key, `image.${key} starts with an empty string: the program to run has no name`);
      }
    }
    if (ep) image.entrypoint = ep;
    if (cmd) image.cmd = cmd;
  }
  const alts = r.table(doc, [], 'alternatives');
  if (alts) {
    for (const k of Object.keys(alts)) image.alternatives[k] = r.string(alts, ['alternatives'], k)!;
    const blas = image.alternatives.blas;
    if (blas !== undefined) {
      if (!isBlasName(blas)) r.fail(['alternatives'], 'blas', `alternatives.blas must be one of ${BLAS_NAMES.map((b) => `"${b}"`).join(', ')}, not "${blas}"`);
      // The implementation's run-time packages join the environment as if the manifest had named them.
      for (const name of blasPackages(blas as BlasName)) if (!packages.some((p) => p.name === name)) packages.push({ name });
    }
  }
  const shell = r.table(doc, [], 'shell');
  if (shell) {
    r.onlyKeys(shell, ['shell'], ['hook']);
    const hook = r.string(shell, ['shell'], 'hook');
    if (hook !== undefined) image.shellHook = hook;
  }
  let develop: Manifest['develop'];
  const dev = r.table(doc, [], 'develop');
  if (dev) {
    r.onlyKeys(dev, ['develop'], ['venv']);
    const venv = r.bool(dev, ['develop'], 'venv');
    develop = { venv: venv === undefined ? 'auto' : venv ? 'required' : 'off' };
  }
  let withRecommends = false;
  let withEssential = true;
  const res = r.table(doc, [], 'resolve');
  if (res) {
    r.onlyKeys(res, ['resolve'], ['recommends', 'essential']);
    if (Array.isArray(res.recommends)) {
      // A list takes just those Recommends: each joins the environment as if [packages] had named it.
      for (const name of r.strings(res, ['resolve'], 'recommends') ?? []) {
        if (!PACKAGE_NAME.test(name)) r.fail(['resolve'], 'recommends', `resolve.recommends: "${name}" is not a valid Debian package name`);
        if (!packages.some((p) => p.name === name)) packages.push({ name });
      }
    } else {
      withRecommends = r.bool(res, ['resolve'], 'recommends') ?? false;
    }
    withEssential = r.bool(res, ['resolve'], 'essential') ?? true;
  }
  const recipes = parseRecipes(r, doc, channelNames);
  let cache: { registry: string } | undefined;
  const cacheT = r.table(doc, [], 'cache');
  if (cacheT) {
    r.onlyKeys(cacheT, ['cache'], ['registry']);
    const reg = r.string(cacheT, ['cache'], 'registry');
    if (reg !== undefined) {
      if (!/^[^/\s]+\/[^\s]+$/.test(reg) || /[@:][^/]*$/.test(reg.slice(reg.indexOf('/')))) r.fail(['cache'], 'registry', `cache.registry must be host[:port]/repository, without a tag or digest (e.g. "HOST:5000/team/strata-cache")`);
      cache = { registry: reg };
    }
  }
  return { path, sha256, name, arch, channels, packages, withRecommends, withEssential, image, ...(recipes.length > 0 ? { recipes } : {}), ...(cache ? { cache } : {}), ...(develop ? { develop } : {}) };
}
