#!/usr/bin/env bash
# The README's test command: installs what is missing, lints, then runs every test (slow ones too)
# with the deterministic hypothesis profile CI uses.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
bash "$here/env.sh" python -m ruff check stage1 tests cli.py bench
bash "$here/env.sh" python -m pytest tests "$@"
