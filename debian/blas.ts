/**
 * `[alternatives] blas = "mkl" | "openblas" | "blis" | "reference"`: one line for what Debian spreads over several
 * update-alternatives and a Recommends. Debian builds NumPy, SciPy, R and the rest against the reference
 * `libblas.so.3` and `liblapack.so.3`; an implementation registers itself for those names (and, through its -dev
 * package, for the `libblas.so`/`liblapack.so` link-time names) and one is chosen. Choosing only BLAS breaks
 * NumPy (`liblapack.so.3: undefined symbol: sgemmtr_` when LAPACK stays the reference one and BLAS is MKL), and MKL's
 * default threading layer needs `libiomp5`, which arrives only through a Recommends (`libomp-dev`).
 *
 * Pure: which packages an implementation adds to the environment, and which registered alternative it picks.
 */

export const BLAS_NAMES = ['mkl', 'openblas', 'blis', 'reference'] as const;
export type BlasName = (typeof BLAS_NAMES)[number];

interface BlasImplementation {
  /** Added to the manifest's packages: what the implementation needs at run time, its threading runtime included. */
  packages: string[];
  /** Which registering packages provide the BLAS and LAPACK alternatives of this choice. */
  blas: RegExp;
  lapack: RegExp;
  /** Where its packages live in Debian, for the message when a channel lacks them. */
  component: string;
}

const IMPLEMENTATIONS: Record<BlasName, BlasImplementation> = {
  // libmkl-rt: the single dynamic library that dispatches to the CPU's kernels; it pulls every threading layer,
  // and its default (Intel threading) loads libiomp5.so, which Debian ships in libomp-dev (LLVM's OpenMP).
  mkl: { packages: ['libmkl-rt', 'libomp-dev'], blas: /^libmkl-/, lapack: /^libmkl-/, component: 'non-free' },
  openblas: { packages: ['libopenblas0-pthread'], blas: /^libopenblas/, lapack: /^libopenblas/, component: 'main' },
  // BLIS implements BLAS only: LAPACK stays the reference one, calling into BLIS.
  blis: { packages: ['libblis4-pthread', 'liblapack3'], blas: /^libblis/, lapack: /^liblapack(3|-dev)$/, component: 'main' },
  reference: { packages: ['libblas3', 'liblapack3'], blas: /^libblas(3|-dev)$/, lapack: /^liblapack(3|-dev)$/, component: 'main' },
};

export const isBlasName = (s: string): s is BlasName => (BLAS_NAMES as readonly string[]).includes(s);

/** The packages `blas = NAME` adds to the environment. */
export const blasPackages = (name: BlasName): string[] => IMPLEMENTATIONS[name].packages;
export const blasComponent = (name: BlasName): string => IMPLEMENTATIONS[name].component;

/**
 * Which BLAS or LAPACK interface an alternative's name stands for: `libblas.so.3-x86_64-linux-gnu` (run time) and
 * `libblas.so-x86_64-linux-gnu` (link time) are `blas`; the 64-bit-index names (`libblas64...`) are not, as
 * nothing in Debian's Python stack loads them. Undefined for any other alternative.
 */
export function blasInterface(alternativeName: string): 'blas' | 'lapack' | undefined {
  const m = /^lib(blas|lapack)\.so(?:\.3)?(?:-[a-z0-9_]+-linux-[a-z0-9_]+)?$/.exec(alternativeName);
  return m ? (m[1] as 'blas' | 'lapack') : undefined;
}

/** Whether `pkg`, registering an alternative for `iface`, belongs to implementation `name`. */
export const providesBlas = (name: BlasName, iface: 'blas' | 'lapack', pkg: string): boolean => IMPLEMENTATIONS[name][iface].test(pkg);
