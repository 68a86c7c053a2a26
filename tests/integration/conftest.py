"""The tiny run, trained once per session and shared by every test that needs a finished run
directory (tests copy it into their tmp_path before changing anything)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# ``python cli.py ARGS`` as Python runs a script (its folder first on sys.path, run as __main__),
# then one last stderr line with the tokenizers asked for and built in that process.
CLI_COUNTING_TOKENIZERS = """
import runpy, sys
from pathlib import Path
sys.argv = sys.argv[1:]
sys.path.insert(0, str(Path(sys.argv[0]).parent))
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    from stage1.hf import tokenizer_cache
    print(f"TOKENIZERS requested {tokenizer_cache.requests} built {tokenizer_cache.loads}", file=sys.stderr)
"""


@pytest.fixture(scope="module")
def ending_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model taught to end its answers (``tests/ending_model.py``), built per test module."""
    from tests.ending_model import build_ending_model

    return build_ending_model(tiny_model_dir, tmp_path_factory.mktemp("ending") / "model")


def _run_in_an_empty_folder(tmp_path_factory, name: str, *args: str, timeout: int) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp(name)
    assert ROOT not in folder.resolve().parents and not any(folder.iterdir())
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", CLI_COUNTING_TOKENIZERS, str(ROOT / "cli.py"), "run", *args], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = folder / "runs" / "tiny"
    assert run_dir.is_dir()
    return run_dir, result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python /path/to/cli.py run --config tiny-random`` in an empty folder outside the checkout:
    the pipeline on random weights (plumbing), written to ``./runs/tiny`` there, its stderr ending
    with the run's tokenizer builds (``CLI_COUNTING_TOKENIZERS``). Read-only for tests: copy it
    before changing a file, and give ``--config tiny-random`` to a command on the copy (the run
    refuses settings other than its own)."""
    return _run_in_an_empty_folder(tmp_path_factory, "empty-user-folder", "--config", "tiny-random", timeout=900)


@pytest.fixture(scope="session")
def organism_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python /path/to/cli.py run``, the README's main command, in an empty folder: the tiny
    default on the model organism (built once into ``$STAGE1_CACHE`` or read from it). Read-only."""
    return _run_in_an_empty_folder(tmp_path_factory, "empty-organism-folder", timeout=2400)


@pytest.fixture(scope="module")
def merged_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The session's tiny SFT run merged (tests/integration/tiny_training.py), per test module."""
    from tests.integration.tiny_training import merged_run

    return merged_run(tiny_model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> tuple[Path, Path]:
    """Train and eval pairs files written from tiny_training's rows, per test module."""
    from tests.integration.tiny_training import write_pairs

    return write_pairs(tmp_path_factory.mktemp("pairs"))
