#!/usr/bin/env bash
# The README's main command: installs what is missing, then runs the whole pipeline on the tiny default.
# Runs in the caller's folder, so `runs/tiny` and any relative path given land where the user is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh" python "$root/cli.py" "${@:-run}"
