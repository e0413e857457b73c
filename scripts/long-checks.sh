#!/usr/bin/env bash
# Long checks, kept out of the default test run (npm test stays under 15 minutes on two cores): the cases that
# download and unpack gigabytes from the real Debian archive or build for long. Each is an ordinary ava test that
# the default run skips with a message; this script turns them on and runs just those files.
#   STRATA_TEST_MKL=1      blas = "mkl": NumPy and SciPy on Intel MKL from non-free (tests/blas-debian.test.ts)
#   STRATA_TEST_ORACLE=1   installed parity: each environment of tests/oracle-debian.test.ts against mmdebstrap's
#                          apt-and-dpkg install of the same lock (STRATA_TEST_ORACLE_ENVS=web-tls,... picks some;
#                          STRATA_TEST_ORACLE_OUT=DIR keeps both trees and the difference lists there;
#                          STRATA_TEST_ORACLE_REUSE=DIR compares with a Debian tree kept there). One at a time
#                          (--serial): the story environment alone needs about 30 GB while both of its trees exist.
set -euo pipefail
cd "$(dirname "$0")/.."
export STRATA_TEST_MKL=1 STRATA_TEST_ORACLE=1
exec bash scripts/test.sh --serial tests/blas-debian.test.ts tests/oracle-debian.test.ts "$@"
