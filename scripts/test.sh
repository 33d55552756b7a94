#!/usr/bin/env bash
# Install Roost with its test extras and run the whole test suite.
#
#   ./scripts/test.sh [pytest arguments...]
#
# The end-to-end tests drive real clients (swaks, curl, fetchmail, mbsync)
# against `roost serve` on free loopback ports; install those first with
# scripts/install-test-deps.sh. Outside CI a missing client skips its
# tests; with CI=true it fails them.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]'

status=0
# branch coverage of the sans-IO protocol cores is reported (STYLE.md)
"$PYTHON" -m pytest -p no:cacheprovider -q \
    --cov=roost.protocols --cov-branch --cov-report=term:skip-covered \
    "$@" || status=$?
if [ "$status" -eq 5 ]; then
    # pytest's "no tests were collected": a suite that ran nothing failed
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
