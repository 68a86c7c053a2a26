#!/usr/bin/env bash
# The README's main command: installs what is missing, then runs the whole pipeline on the tiny default.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/env.sh" python cli.py "${@:-run}"
