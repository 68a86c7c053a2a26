"""The README's main command on the organism (the session's shared ``organism_run``) against its
golden result, through the CLI: CI's regression check of the method, two-sided (a significant
change either way is printed, a significant drop fails)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "fixtures" / "golden" / "tiny_run.json"


def test_the_default_run_matches_its_golden_result(organism_run, tmp_path):
    run_dir, _ = organism_run
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "evaluate", "--run-dir", str(run_dir), "--against", str(GOLDEN)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no significant regression" in result.stdout
