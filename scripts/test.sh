#!/usr/bin/env bash
# The README's test command: installs what is missing, lints, then runs every test (slow ones too)
# with the deterministic hypothesis profile CI uses. Test paths given relative to the caller's folder
# keep their meaning: each argument that names an existing path is made absolute before pytest runs
# in the checkout (where its configuration and the tests live).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
args=()
for arg in "$@"; do
  if [ -e "$arg" ]; then args+=("$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")"); else args+=("$arg"); fi
done
cd "$root"
bash scripts/env.sh python -m ruff check stage1 tests cli.py bench fixtures
if [ "${#args[@]}" -eq 0 ]; then args=(tests); fi
# Two workers (STAGE1_TEST_WORKERS=0 runs in one process); tests/conftest.py keeps the session's tiny
# run and each integration file on one worker (--dist loadscope with the scheduler there), one compute thread each.
bash scripts/env.sh python -m pytest -n "${STAGE1_TEST_WORKERS:-2}" --dist loadscope "${args[@]}"
