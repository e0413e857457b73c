/**
 * `strata init`: writes a commented starter strata.toml in the current directory. The default channel's suite is
 * the host's (from its apt sources) when the host is Debian, else `--suite` must name one. Never overwrites.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { hostAptSources } from '../channels/mirror.ts';
import { StrataError } from '../errors.ts';

export interface InitOptions {
  suite?: string;
  name?: string;
  dir?: string;
}

/** The host's Debian suite: the first apt source's first suite that is not a security or updates suite. */
function hostSuite(): string | undefined {
  for (const s of hostAptSources()) for (const suite of s.suites) if (!/-security$|-updates$|\/updates$|-backports$/.test(suite)) return suite;
  return undefined;
}

function projectName(dir: string): string {
  const n = basename(dir).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 64);
  return n || 'project';
}

export function starterManifest(name: string, suite: string, packages: string[]): string {
  const pkgs = packages.length > 0 ? packages.map((p) => `${p} = "*"`).join('\n') : 'python3 = "*"\n# python3-numpy = "*"';
  return `# strata.toml: the environment of this project. \`strata lock\` resolves it into strata.lock (commit both);
# \`strata run -- CMD\` and \`strata shell\` enter it. See the README of strata for every key.

[project]
name = "${name}"

# The first channel is the default one: every package comes from it unless it names another channel.
[channels.stable]
suite = "${suite}"
components = ["main", "contrib", "non-free"]
# url = "http://<a Debian mirror>/debian"   # default: STRATA_DEBIAN_MIRROR, else the host's apt sources

# A newer suite, for the few packages that need it: name = { channel = "current" }
# [channels.current]
# suite = "forky"
# components = ["main", "contrib", "non-free"]
# check-valid-until = false

[packages]
${pkgs}

# [gpu]
# driver = "host"        # use the host's NVIDIA driver at run time

# [env]
# OMP_NUM_THREADS = "8"
# DATA = "\${PROJECT}/data"   # \${PROJECT} and \${HOME} are set for each run
`;
}

export async function initCommand(packages: string[], opts: InitOptions): Promise<void> {
  const dir = resolve(opts.dir ?? process.cwd());
  const path = join(dir, 'strata.toml');
  if (existsSync(path)) throw new StrataError('E_USAGE', `${path} already exists`, 'edit it, or remove it to start over');
  const suite = opts.suite ?? hostSuite();
  if (!suite) throw new StrataError('E_USAGE', 'this host has no Debian apt sources to take a suite from', 'name one: strata init --suite trixie');
  if (!/^[a-z0-9][a-z0-9.+/-]*$/.test(suite)) throw new StrataError('E_USAGE', `--suite "${suite}" is not a suite name like trixie`);
  const name = opts.name ?? projectName(dir);
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new StrataError('E_USAGE', `--name "${name}" must be lower-case letters, digits, . _ -`);
  for (const p of packages) if (!/^[a-z0-9][a-z0-9+.-]+$/.test(p)) throw new StrataError('E_USAGE', `"${p}" is not a Debian package name`);
  writeFileSync(path, starterManifest(name, suite, packages), { flag: 'wx' });
  process.stdout.write(`wrote ${path} (suite ${suite}${opts.suite ? '' : ", from this host's apt sources"}); next: strata lock\n`);
}
