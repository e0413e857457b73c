/**
 * The standard fixture scenario: two suites of one archive, each with components `main` and `contrib`,
 * arch amd64 plus `all` packages. Build it with `standardMirror(dir)` (mirror.ts).
 *
 *   suite `stable`  (codename `strata-stable`,  Date Sat, 01 Jun 2024 12:00:00 UTC)
 *   suite `current` (codename `strata-current`, Date Sun, 01 Sep 2024 12:00:00 UTC)
 *   `dists/stable` and `dists/current` are symlinks to the codename directories.
 *
 * Stories (package versions: stable / current; "-" = absent):
 *
 * 1. Held broken packages. libc6 2.36-9 / 2.41-6 and libc6-dev 2.36-9 / 2.41-6 (source glibc; libc6-dev
 *    Depends `libc6 (= <same version>)`). current only: libfoo1 1.2-1 Depends `libc6 (>= 2.40)`;
 *    libfoo-dev 1.2-1 Depends `libfoo1 (= 1.2-1), libc6-dev` (source foo). So libfoo-dev from current
 *    plus libc6-dev from stable is solvable only by taking libc6 AND libc6-dev from current.
 * 2. Virtual package. mailer 1.0-1 (stable) Depends `mail-transport-agent`, provided by exim-lite and
 *    posty (stable); each of them also Conflicts `mail-transport-agent` (the postfix pattern: a package
 *    never conflicts with itself, but two MTAs exclude each other). Versioned Provides: libjpeg-turbo
 *    1:2.1.5-2 (stable) Provides `libjpeg (= 8)`; imageviewer 3.1-1 (stable) Depends `libjpeg (>= 8)`.
 * 3. Alternatives whose first member exists nowhere: downloader 1.0-1 (stable) Depends
 *    `curl-ng | wget-lite`; only wget-lite 1.21.3-1 (stable) exists.
 * 4. Conflicts and Breaks. vi-lite and vi-heavy 9.0-1 (stable) Conflict with each other (both Provide
 *    `editor`). toolkit 1.0-1 / 2.0-1 and toolkit-plugin 1.0-1 / 2.0-1 (Depends `toolkit (>= <its
 *    version>)`); current's toolkit 2.0-1 Breaks `toolkit-plugin (<< 2.0)`.
 * 5. A dependency cycle (stable): cyc-a 1.0-1 Depends `cyc-b`; cyc-b 1.0-1 Depends `cyc-a (= 1.0-1)`;
 *    cyc-user 1.0-1 Depends `cyc-a` (outside the cycle).
 * 6. Multi-Arch. fixture-data 1.0-1 (arch all, Multi-Arch: foreign; both suites, one pool file);
 *    python3 3.11.2-1 / 3.13.5-1 is Multi-Arch: allowed; fixture-tool 1.0-1 (stable) Depends
 *    `python3:any, fixture-data`. libc6, zlib1g, libblas3, libcuda1, libcudart12 are Multi-Arch: same.
 * 7. NVIDIA (component contrib only, both suites). Source nvidia-graphics-drivers 550.54.14-1 /
 *    560.35.03-1: libcuda1 (Provides `libcuda.so.1 (= 550.54.14)` / `(= 560.35.03)`, Depends
 *    `libc6 (>= 2.34), nvidia-kernel-support (= <same version>)`), libnvidia-ml1 (Depends
 *    nvidia-kernel-support (= <same version>)), nvidia-kernel-support (must NOT be followed when the
 *    driver is host-provided). libcudart12 12.4.127-1 (source nvidia-cuda-toolkit, both suites, one pool
 *    file) Depends `libc6 (>= 2.36)`, Recommends `libcuda1 (>= 550)`. cuda-user 1.0-1 Depends
 *    `libcuda1 (>= 545) | libcuda.so.1 (>= 545), libcudart12`. Every contrib package is contrib-only.
 * 8. Runnable set for realise/run tests.
 *    - busybox-fixture 1.35.0-4 (source busybox; both suites, one pool file): the host's static
 *      /bin/busybox at `bin/busybox` (old-style path, 0755), `bin/sh -> busybox`, and
 *      `usr/bin/{ls,cat,id,echo,env,touch} -> ../../bin/busybox`. No dependencies.
 *    - Old-style library paths: zlib1g 1:1.2.13.dfsg-1+b1 (stable; a binNMU: `Source: zlib
 *      (1:1.2.13.dfsg-1)`, epoch dropped in the pool filename) ships `lib/x86_64-linux-gnu/libz.so.1.2.13`
 *      and `lib/x86_64-linux-gnu/libz.so.1 -> libz.so.1.2.13`. stable's libc6 ships
 *      `lib/x86_64-linux-gnu/{libc.so.6,ld-linux-x86-64.so.2}` and the absolute symlink
 *      `lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2` (bookworm style);
 *      current's libc6 ships the same under `usr/` (trixie style, relative lib64 link). zlib1g
 *      1:1.3.dfsg+really1.3.1-1+b1 in current ships under `usr/lib/x86_64-linux-gnu/`. (The "libraries"
 *      are small text files, not ELF.)
 *    - Alternatives: libblas3 3.11.0-2 / 3.12.1-2 (source lapack) ships
 *      `usr/lib/x86_64-linux-gnu/blas/libblas.so.3` (content `reference BLAS <version>\n`) and registers
 *      it as `libblas.so.3-x86_64-linux-gnu` for `/usr/lib/x86_64-linux-gnu/libblas.so.3` with priority
 *      10 in its postinst; libopenblas0 0.3.21+ds-4 (stable; source openblas) ships
 *      `usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3` (content `OpenBLAS <version>\n`) with
 *      priority 100. Both Provide `libblas.so.3`.
 *    - Essential: base-files 12.4 / 13.8 (Essential: yes, Priority: required) ships `etc/debian_version`.
 *    - data.tar compression: pkg-zstd, pkg-gzip, pkg-none 1.0-1 (stable) each ship
 *      `usr/share/<name>/hello.txt` (`hello from <name>\n`); every other package is xz.
 * 9. Near names for "did you mean": python3-numpy 1:1.24.2-1 / 1:2.2.4+ds-1 (Depends python3,
 *    `python3:any`, `libblas3 | libblas.so.3`; Provides python3-numpy-abi9), python3-scipy 1.10.1-2
 *    (stable; Depends `python3-numpy (>= 1:1.19.5), python3-numpy-abi9`), python3-numpy-doc 1:1.24.2-1
 *    (stable, arch all). A test can ask for `python3-numpi`.
 *
 * All packages are amd64 unless marked `all`.
 */
import { readFileSync } from 'node:fs';
import type { FixturePackage, FixtureSuite } from './mirror.ts';

const nvidiaKernelSupport = (v: string): FixturePackage => ({
  name: 'nvidia-kernel-support',
  version: v,
  source: 'nvidia-graphics-drivers',
  section: 'contrib/kernel',
  files: [{ path: 'etc/modprobe.d/nvidia.conf', content: 'options nvidia NVreg_fixture=1\n' }],
});

const nvidia = (v: string, upstream: string): FixturePackage[] => [
  {
    name: 'libcuda1',
    version: v,
    source: 'nvidia-graphics-drivers',
    section: 'contrib/libs',
    multiArch: 'same',
    provides: `libcuda.so.1 (= ${upstream})`,
    depends: `libc6 (>= 2.34), nvidia-kernel-support (= ${v})`,
    files: [{ path: 'usr/lib/x86_64-linux-gnu/libcuda.so.1', content: `fixture libcuda ${upstream}\n` }],
  },
  {
    name: 'libnvidia-ml1',
    version: v,
    source: 'nvidia-graphics-drivers',
    section: 'contrib/libs',
    multiArch: 'same',
    depends: `nvidia-kernel-support (= ${v})`,
    files: [{ path: 'usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1', content: `fixture libnvidia-ml ${upstream}\n` }],
  },
  nvidiaKernelSupport(v),
];

const libcudart12: FixturePackage = {
  name: 'libcudart12',
  version: '12.4.127-1',
  source: 'nvidia-cuda-toolkit',
  section: 'contrib/libs',
  multiArch: 'same',
  depends: 'libc6 (>= 2.36)',
  recommends: 'libcuda1 (>= 550)',
  files: [{ path: 'usr/lib/x86_64-linux-gnu/libcudart.so.12', content: 'fixture libcudart 12.4.127\n' }],
};

const cudaUser: FixturePackage = {
  name: 'cuda-user',
  version: '1.0-1',
  section: 'contrib/science',
  depends: 'libcuda1 (>= 545) | libcuda.so.1 (>= 545), libcudart12',
};

const APPLETS = ['ls', 'cat', 'id', 'echo', 'env', 'touch'];

const busyboxFixture: FixturePackage = {
  name: 'busybox-fixture',
  version: '1.35.0-4',
  source: 'busybox',
  section: 'utils',
  description: 'static busybox (strata test fixture)\nThe host\'s static busybox with a few applet links.',
  files: [
    { path: 'bin/busybox', from: '/bin/busybox', mode: 0o755 },
    { path: 'bin/sh', symlink: 'busybox' },
    ...APPLETS.map((a) => ({ path: `usr/bin/${a}`, symlink: '../../bin/busybox' })),
  ],
};

const fixtureData: FixturePackage = {
  name: 'fixture-data',
  version: '1.0-1',
  arch: 'all',
  multiArch: 'foreign',
  files: [{ path: 'usr/share/fixture-data/data.txt', content: 'architecture-independent data\n' }],
};

const ALTERNATIVE = '/usr/lib/x86_64-linux-gnu/libblas.so.3';
const ALTERNATIVE_NAME = 'libblas.so.3-x86_64-linux-gnu';

const blas = (name: string, version: string, source: string, dir: string, content: string, priority: number): FixturePackage => ({
  name,
  version,
  source,
  section: 'libs',
  multiArch: 'same',
  provides: 'libblas.so.3',
  files: [{ path: `usr/lib/x86_64-linux-gnu/${dir}/libblas.so.3`, content }],
  postinst:
    `if [ "$1" = configure ]; then\n` +
    `  update-alternatives --install ${ALTERNATIVE} ${ALTERNATIVE_NAME} /usr/lib/x86_64-linux-gnu/${dir}/libblas.so.3 ${priority}\n` +
    `fi\n`,
});

const baseFiles = (version: string): FixturePackage => ({
  name: 'base-files',
  version,
  essential: true,
  priority: 'required',
  section: 'admin',
  files: [{ path: 'etc/debian_version', content: `${version}\n` }],
});

const libc = (version: string, oldStyle: boolean): FixturePackage[] => {
  const lib = oldStyle ? 'lib/x86_64-linux-gnu' : 'usr/lib/x86_64-linux-gnu';
  return [
    {
      name: 'libc6',
      version,
      source: 'glibc',
      section: 'libs',
      multiArch: 'same',
      files: [
        { path: `${lib}/libc.so.6`, content: `fixture libc ${version}\n` },
        { path: `${lib}/ld-linux-x86-64.so.2`, content: `fixture ld.so ${version}\n`, mode: 0o755 },
        oldStyle
          ? { path: 'lib64/ld-linux-x86-64.so.2', symlink: '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' }
          : { path: 'usr/lib64/ld-linux-x86-64.so.2', symlink: '../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' },
      ],
    },
    {
      name: 'libc6-dev',
      version,
      source: 'glibc',
      section: 'libdevel',
      multiArch: 'same',
      depends: `libc6 (= ${version})`,
      files: [{ path: 'usr/include/stdio.h', content: `/* fixture glibc ${version} */\n` }],
    },
  ];
};

const python3 = (version: string): FixturePackage => ({
  name: 'python3',
  version,
  source: 'python3-defaults',
  section: 'python',
  multiArch: 'allowed',
  depends: 'libc6 (>= 2.34)',
  files: [{ path: 'usr/bin/python3', content: '#!/bin/sh\necho "fixture python"\n', mode: 0o755 }],
});

const numpy = (version: string, python: string): FixturePackage => ({
  name: 'python3-numpy',
  version,
  source: 'numpy',
  section: 'python',
  depends: `python3 (>= ${python}~), python3:any, libblas3 | libblas.so.3, libc6 (>= 2.34)`,
  provides: 'python3-numpy-abi9',
  files: [{ path: 'usr/lib/python3/dist-packages/numpy/__init__.py', content: `__version__ = "${version}"\n` }],
});

const toolkit = (version: string, breaks?: string): FixturePackage[] => [
  { name: 'toolkit', version, ...(breaks ? { breaks } : {}) },
  { name: 'toolkit-plugin', version, depends: `toolkit (>= ${version.replace(/-\d+$/, '')})` },
];

const compressed = (compression: 'zstd' | 'gzip' | 'none'): FixturePackage => {
  const name = `pkg-${compression}`;
  return { name, version: '1.0-1', compression, files: [{ path: `usr/share/${name}/hello.txt`, content: `hello from ${name}\n` }] };
};

const mta = (name: string, version: string): FixturePackage => ({
  name,
  version,
  section: 'mail',
  provides: 'mail-transport-agent',
  conflicts: 'mail-transport-agent',
});

export const standardSuites: FixtureSuite[] = [
  {
    suite: 'stable',
    codename: 'strata-stable',
    date: 'Sat, 01 Jun 2024 12:00:00 UTC',
    components: {
      main: [
        baseFiles('12.4'),
        ...libc('2.36-9', true),
        {
          name: 'zlib1g',
          version: '1:1.2.13.dfsg-1+b1',
          source: 'zlib (1:1.2.13.dfsg-1)',
          section: 'libs',
          multiArch: 'same',
          depends: 'libc6 (>= 2.14)',
          files: [
            { path: 'lib/x86_64-linux-gnu/libz.so.1.2.13', content: 'fixture zlib 1.2.13\n' },
            { path: 'lib/x86_64-linux-gnu/libz.so.1', symlink: 'libz.so.1.2.13' },
          ],
        },
        busyboxFixture,
        blas('libblas3', '3.11.0-2', 'lapack', 'blas', 'reference BLAS 3.11.0-2\n', 10),
        blas('libopenblas0', '0.3.21+ds-4', 'openblas', 'openblas-pthread', 'OpenBLAS 0.3.21+ds-4\n', 100),
        python3('3.11.2-1'),
        numpy('1:1.24.2-1', '3.11'),
        {
          name: 'python3-scipy',
          version: '1.10.1-2',
          source: 'scipy',
          section: 'python',
          depends: 'python3-numpy (>= 1:1.19.5), python3-numpy-abi9, python3:any',
        },
        { name: 'python3-numpy-doc', version: '1:1.24.2-1', source: 'numpy', arch: 'all', section: 'doc', multiArch: 'foreign' },
        { name: 'mailer', version: '1.0-1', section: 'mail', depends: 'mail-transport-agent' },
        mta('exim-lite', '4.96-15'),
        mta('posty', '3.7.10-1'),
        { name: 'libjpeg-turbo', version: '1:2.1.5-2', section: 'libs', provides: 'libjpeg (= 8)' },
        { name: 'imageviewer', version: '3.1-1', section: 'graphics', depends: 'libjpeg (>= 8)' },
        { name: 'downloader', version: '1.0-1', section: 'web', depends: 'curl-ng | wget-lite' },
        { name: 'wget-lite', version: '1.21.3-1', section: 'web' },
        { name: 'vi-lite', version: '9.0-1', section: 'editors', provides: 'editor', conflicts: 'vi-heavy' },
        { name: 'vi-heavy', version: '9.0-1', section: 'editors', provides: 'editor', conflicts: 'vi-lite' },
        ...toolkit('1.0-1'),
        { name: 'cyc-a', version: '1.0-1', depends: 'cyc-b' },
        { name: 'cyc-b', version: '1.0-1', depends: 'cyc-a (= 1.0-1)' },
        { name: 'cyc-user', version: '1.0-1', depends: 'cyc-a' },
        fixtureData,
        { name: 'fixture-tool', version: '1.0-1', depends: 'python3:any, fixture-data' },
        compressed('zstd'),
        compressed('gzip'),
        compressed('none'),
      ],
      contrib: [...nvidia('550.54.14-1', '550.54.14'), libcudart12, cudaUser],
    },
  },
  {
    suite: 'current',
    codename: 'strata-current',
    date: 'Sun, 01 Sep 2024 12:00:00 UTC',
    components: {
      main: [
        baseFiles('13.8'),
        ...libc('2.41-6', false),
        { name: 'libfoo1', version: '1.2-1', source: 'foo', section: 'libs', depends: 'libc6 (>= 2.40)' },
        { name: 'libfoo-dev', version: '1.2-1', source: 'foo', section: 'libdevel', depends: 'libfoo1 (= 1.2-1), libc6-dev' },
        {
          name: 'zlib1g',
          version: '1:1.3.dfsg+really1.3.1-1+b1',
          source: 'zlib (1:1.3.dfsg+really1.3.1-1)',
          section: 'libs',
          multiArch: 'same',
          depends: 'libc6 (>= 2.14)',
          files: [
            { path: 'usr/lib/x86_64-linux-gnu/libz.so.1.3.1', content: 'fixture zlib 1.3.1\n' },
            { path: 'usr/lib/x86_64-linux-gnu/libz.so.1', symlink: 'libz.so.1.3.1' },
          ],
        },
        busyboxFixture,
        blas('libblas3', '3.12.1-2', 'lapack', 'blas', 'reference BLAS 3.12.1-2\n', 10),
        python3('3.13.5-1'),
        numpy('1:2.2.4+ds-1', '3.13'),
        ...toolkit('2.0-1', 'toolkit-plugin (<< 2.0)'),
        fixtureData,
      ],
      contrib: [...nvidia('560.35.03-1', '560.35.03'), libcudart12, cudaUser],
    },
  },
];

/** Throws unless the host has the static busybox that busybox-fixture ships (Debian package busybox-static). */
export function assertStaticBusybox(path = '/bin/busybox'): void {
  let elf: Buffer;
  try {
    elf = readFileSync(path);
  } catch {
    throw new Error(`the fixture archive needs a static busybox at ${path}: install the Debian package busybox-static`);
  }
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) throw new Error(`${path} is not a 64-bit ELF file`);
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) {
      throw new Error(`${path} is dynamically linked: install the Debian package busybox-static (it replaces busybox)`);
    }
  }
}
