#!/usr/bin/env bash
# Create (once) and reuse the project's virtual environment, install what is missing, then run the
# given command inside it. torch is installed first and pinned, so nothing pulls a CUDA build on a
# CPU machine; set STAGE1_TORCH to another requirement (e.g. "torch" for CUDA) on a GPU machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${STAGE1_VENV:-$root/.venv}"
torch_req="${STAGE1_TORCH:-torch==2.13.0}"
stamp="$venv/.stage1-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16) $torch_req"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "$torch_req"
  "$venv/bin/python" -m pip install -q -e "$root[dev]"
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# No `cd`: a user's relative --run-dir, --in and --config paths keep meaning what they typed.
if [ "$#" -gt 0 ] && [ "$1" = "python" ]; then shift; exec "$venv/bin/python" "$@"; fi
exec "$@"
