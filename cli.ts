#!/usr/bin/env node
/**
 * strata's command line: maps verbs to lazily imported `commands/<verb>.ts` modules and turns errors into
 * exit codes. A StrataError is the user's to fix (message + hint, no stack); anything else is a bug.
 */
import { enableCompileCache } from 'node:module';
import { Command, CommanderError } from 'commander';
import { StrataError, isStrataError, exitCodeFor } from './errors.ts';
import { compileCacheDir } from './store/cacheDir.ts';

// The commands' modules load from Node's compile cache, not stripped of their types and compiled again on every run
// (a third of a warm `strata lock`). Without one (no store yet, or a cache that cannot be made) that is all it costs.
// bin/strata names it in NODE_COMPILE_CACHE before Node starts, which caches cli.ts as well; nothing strata starts
// inherits that.
if (process.env.STRATA_COMPILE_CACHE_SET === '1') {
  delete process.env.NODE_COMPILE_CACHE;
  delete process.env.STRATA_COMPILE_CACHE_SET;
}
const compiled = compileCacheDir();
if (compiled !== undefined) enableCompileCache(compiled);

const program = new Command();
program
  .name('strata')
  .description('Reproducible research environments from Debian channels: lock a manifest, realise it as an OCI image, run it.')
  .version('0.1.0')
  .enablePositionalOptions()
  .exitOverride()
  .showHelpAfterError('(run with --help for usage)')
  // Extra CAs for every TLS connection of the run (registries, the cache, mirrors): --ca-file, else SSL_CERT_FILE.
  .hook('preAction', async (_program, action) => {
    const file = (action.opts() as { caFile?: string }).caFile;
    const from = file !== undefined ? '--ca-file' : 'SSL_CERT_FILE';
    const path = file ?? (process.env.SSL_CERT_FILE || undefined);
    if (path !== undefined) (await import('./registry/tls.ts')).useCaFile(path, from);
  });

program
  .command('lock')
  .description('resolve strata.toml into strata.lock: a fully hashed, deterministic dependency graph')
  .option('-m, --manifest <path>', 'the manifest to lock', 'strata.toml')
  .option('--check', 'exit 0 if strata.lock is up to date with the manifest, non-zero with the reason if not')
  .option('--online', "with --check: also check every locked package against the channels' signed indexes, fetched now")
  .option('--update [packages...]', 'move these packages (and what they now need) to what the channels offer now; alone: every package. Without it, a re-lock keeps every locked version the channels still offer')
  .option('--offline', 'use only cached channel indexes; download nothing')
  .option('--json', 'print the summary as JSON')
  .action(async (opts) => (await import('./commands/lock.ts')).lockCommand(opts));

program
  .command('realise')
  .alias('realize')
  .description("download, verify and build every locked package as OCI layers; write or load the image; leave the sandbox's root filesystem (hard links to the store) ready for strata run")
  .option('-m, --manifest <path>', 'the manifest whose strata.lock to realise', 'strata.toml')
  .option('--oci <dir>', 'write an OCI image layout (image-spec 1.1) to DIR')
  .option('--docker-archive <file>', 'write one tar that both `docker load` and OCI tools read')
  .option('--load', 'load the image into the Docker engine at DOCKER_HOST')
  .option('--tag <name>', 'image name:tag for --load and --docker-archive (default: <project>:<closure prefix>)')
  .option('--gzip', 'gzip-compress layers in --oci and --docker-archive output (deterministic)')
  .option('--locked', 'refuse a lock that is stale against the manifest')
  .option('-j, --jobs <n>', 'concurrent downloads', '8')
  .option('--push-cache', 'upload to the cache registry ([cache] registry, STRATA_CACHE_REGISTRY) every layer and recipe output it lacks')
  .option('--insecure', 'allow plain HTTP to a cache registry that is not on loopback')
  .option('--ca-file <file>', 'also trust the CA certificates in this PEM file for TLS (default: SSL_CERT_FILE)')
  .action(async (opts) => {
    await (await import('./commands/realise.ts')).realiseCommand(opts);
  });

program
  .command('build')
  .description('build one recipe (and the recipes it depends on) into the store, as realise would')
  .argument('<name>', 'the recipe, as in [recipes.NAME]')
  .option('-m, --manifest <path>', 'the manifest that defines the recipe', 'strata.toml')
  .option('--rebuild', 'build it again even when its output is in the store')
  .option('--check', 'build it a second time in a fresh sandbox and compare the outputs byte for byte')
  .option('--locked', 'refuse a lock that is stale against the manifest')
  .option('--insecure', 'allow plain HTTP to a cache registry that is not on loopback')
  .option('--ca-file <file>', 'also trust the CA certificates in this PEM file for TLS (default: SSL_CERT_FILE)')
  .action(async (name: string, opts) => (await import('./commands/build.ts')).buildCommand(name, opts));

const runOptions = (c: Command) =>
  c
    .option('-m, --manifest <path>', 'the manifest of the environment', 'strata.toml')
    .option('--backend <name>', 'docker or sandbox (default: docker when an engine answers, else sandbox)')
    .option('--gpus <which>', 'all, none, or device indexes like 0,1 (default: all when the environment has [gpu], else none)')
    .option('--locked', 'fail if strata.lock is missing or stale instead of locking first')
    .option('--frozen', 'like --locked, and never realise: use the image already built')
    .option('--no-network', 'run without network access')
    .option('-e, --env <KEY=VALUE>', 'an extra environment variable inside (repeat -e for more)', (v: string, all: string[] = []) => [...all, v])
    .option('--share-tmp', "bind the host's /tmp inside instead of a private one (e.g. to git clone file:///tmp/...)")
    .option('--image <ref>', 'run this image from a registry (pulled into the store when missing) instead of the manifest\'s environment; sandbox backend')
    .option('--insecure', 'allow plain HTTP to a registry (--image, or the cache registry) that is not on loopback')
    .option('--ca-file <file>', 'also trust the CA certificates in this PEM file for TLS (default: SSL_CERT_FILE)');

runOptions(
  program
    .command('run')
    .description('run one command in the environment and exit with its exit code')
    .argument('<command...>', 'the command and its arguments (put them after --)')
    .passThroughOptions(),
).action(async (command: string[], opts) => (await import('./commands/run.ts')).runCommand(command, opts));

runOptions(program.command('shell').description('open an interactive shell in the environment')).action(async (opts) =>
  (await import('./commands/run.ts')).shellCommand(opts),
);

program
  .command('freeze')
  .description("write what was pip-installed into the project's venv (.strata/venv) into strata.toml as recipes")
  .option('-m, --manifest <path>', 'the manifest to add the recipes to', 'strata.toml')
  .action(async (opts) => (await import('./commands/freeze.ts')).freezeCommand(opts));

program
  .command('status')
  .description("show whether strata.lock is current, and what the project's venv holds beyond the lock (pip installs, editable checkouts)")
  .option('-m, --manifest <path>', 'the project\'s manifest', 'strata.toml')
  .option('--json', 'print the status as JSON')
  .action(async (opts) => (await import('./commands/status.ts')).statusCommand(opts));

program
  .command('init')
  .description('write a commented starter strata.toml here (the suite from the host\'s apt sources, or --suite)')
  .argument('[packages...]', 'Debian packages to start with (default python3)')
  .option('--suite <name>', 'the default channel\'s suite, e.g. trixie')
  .option('--name <name>', 'the project\'s name (default: the directory\'s)')
  .action(async (packages: string[], opts) => (await import('./commands/init.ts')).initCommand(packages, opts));

program
  .command('push')
  .description('realise the environment (gzip layers) and push it to an OCI registry: host[:port]/name[:tag]')
  .argument('[ref]', 'where to push: host[:port]/name[:tag] (default tag: the lock\'s closure prefix)')
  .option('--cache', 'also upload to the cache registry ([cache] registry, STRATA_CACHE_REGISTRY) every layer and recipe output it lacks')
  .option('-m, --manifest <path>', 'the manifest whose environment to push', 'strata.toml')
  .option('--tag <tag>', 'also push under this tag (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option('--insecure', 'allow plain HTTP to a registry that is not on loopback')
  .option('--ca-file <file>', 'also trust the CA certificates in this PEM file for TLS (default: SSL_CERT_FILE)')
  .option('--locked', 'refuse a lock that is stale against the manifest')
  .option('-j, --jobs <n>', 'concurrent downloads while realising', '8')
  .action(async (ref: string | undefined, opts) => (await import('./commands/push.ts')).pushCommand(ref, opts));

program
  .command('pull')
  .description('fetch an image from an OCI registry into the store, verifying every blob; print its digest and the lock closure it realises')
  .argument('<ref>', 'host[:port]/name[:tag] or host[:port]/name@sha256:...')
  .option('--insecure', 'allow plain HTTP to a registry that is not on loopback')
  .option('--ca-file <file>', 'also trust the CA certificates in this PEM file for TLS (default: SSL_CERT_FILE)')
  .option('-j, --jobs <n>', 'concurrent blob downloads', '4')
  .option('--lock <file>', 'write the strata.lock attached to the image to FILE')
  .action(async (ref: string, opts) => (await import('./commands/pull.ts')).pullCommand(ref, opts));

program
  .command('why')
  .description('show why a package is in the environment: the dependency paths from the requested packages, read from strata.lock')
  .argument('<package>', 'a package in strata.lock')
  .option('-m, --manifest <path>', 'the manifest whose strata.lock to read', 'strata.toml')
  .option('--json', 'print the paths as JSON')
  .action(async (pkg: string, opts) => (await import('./commands/why.ts')).whyCommand(pkg, opts));

program
  .command('diff')
  .description('show what changed between two locks, package by package (default: git HEAD\'s strata.lock and the working one)')
  .argument('[old]', 'a lock file, or a git revision of the project\'s strata.lock (default HEAD)')
  .argument('[new]', 'a lock file, or a git revision (default: the working strata.lock)')
  .option('-m, --manifest <path>', 'the manifest whose strata.lock to compare', 'strata.toml')
  .option('--json', 'print the differences as JSON')
  .action(async (oldSide: string | undefined, newSide: string | undefined, opts) => (await import('./commands/diff.ts')).diffCommand(oldSide, newSide, opts));

program
  .command('verify')
  .description('re-hash every blob and check every cached layer, unpacked package and root filesystem; drop what is damaged')
  .option('--dry-run', 'report damaged entries but leave them in place')
  .action(async (opts) => {
    await (await import('./commands/verify.ts')).verifyCommand(opts);
  });

program
  .command('gc')
  .description('remove from the store what no live environment needs (roots: projects whose strata.lock still has the closure realised, pulled images, anything used within --keep-days)')
  .option('--dry-run', 'list what would go and how many bytes; remove nothing')
  .option('--keep-days <n>', 'also keep whatever was used or written within N days', '30')
  .action(async (opts) => {
    await (await import('./commands/gc.ts')).gcCommand(opts);
  });

program
  .command('cache')
  .description('the store')
  .command('info')
  .description("show the store's size by kind (downloads, layers, trees, recipe outputs, indexes, records)")
  .action(async () => {
    await (await import('./commands/gc.ts')).cacheInfoCommand();
  });

/**
 * A file strata may not write or read (a store made by another user, say root in a container, then used as an
 * ordinary one; a read-only mount): one message naming the path and the user, not an internal error.
 */
function permissionProblem(e: unknown): { message: string; hint: string } | undefined {
  const err = e as NodeJS.ErrnoException | undefined;
  if (!err || typeof err.path !== 'string' || !['EACCES', 'EPERM', 'EROFS'].includes(err.code ?? '')) return undefined;
  const who = `uid ${process.getuid?.() ?? '?'}`;
  const what = err.code === 'EROFS' ? 'is on a read-only filesystem' : `is not ${err.syscall === 'open' || err.syscall === 'scandir' ? 'accessible' : 'writable'} to ${who}`;
  return {
    message: `${err.path} ${what} (${err.syscall ?? 'access'}: ${err.code})`,
    hint: 'the store (STRATA_CACHE_DIR) and the project directory must belong to the user strata runs as: a store another user made (root in a container, say) needs `chown -R`, or run strata as that user',
  };
}

async function main(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 64;
    if (isStrataError(e)) {
      process.stderr.write(`error: ${e.message}\n`);
      if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
      return exitCodeFor(e.code);
    }
    const denied = permissionProblem(e);
    if (denied) {
      process.stderr.write(`error: ${denied.message}\nhint: ${denied.hint}\n`);
      return 1;
    }
    process.stderr.write(`strata: internal error (a bug; please report it with this output):\n`);
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 70;
  }
}

// Standard output going away must not take the work with it. Node writes a pipe asynchronously, so a reader that
// has gone (`strata realise ... | head -1`) shows up as an 'error' event on process.stdout, later; a full device
// (`> /dev/full`) the same way. Either way strata stops printing and finishes what it was writing (an image
// layout, an archive, the lock), so an output is complete or as it was, never half-written. Then: a closed pipe
// ends quietly with 141, as a tool killed by SIGPIPE does (git, coreutils); any other failure is reported and
// ends with 1. A failing command's own error and exit code come first.
let stdoutError: NodeJS.ErrnoException | undefined;
let result: number | undefined;
async function finalCode(code: number): Promise<number> {
  if (code !== 0 || stdoutError === undefined) return code;
  if (stdoutError.code === 'EPIPE') return 141;
  const { diskFullAt, isDiskFull } = await import('./store/store.ts');
  const e = isDiskFull(stdoutError)
    ? diskFullAt('standard output', "strata's report")
    : new StrataError('E_OUTPUT', `cannot write to standard output: ${stdoutError.message}`);
  process.stderr.write(`error: ${e.message}\n`);
  return exitCodeFor(e.code);
}
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (stdoutError !== undefined) return;
  stdoutError = e;
  if (result !== undefined) void finalCode(result).then((c) => (process.exitCode = c));
});
// A closed stderr (`2>&1 | head -1`) leaves nothing to tell; it must not end the run either.
process.stderr.on('error', () => {});

result = await main(process.argv);
process.exitCode = await finalCode(result);
