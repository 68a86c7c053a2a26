"""``pip install .`` (not editable) gives a package that runs from any folder: its presets and pools
travel inside it, and ``python -m stage1`` finds them there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (
    "stage1/presets/tiny.yaml",
    "stage1/presets/qwen2.5-32b.yaml",
    "stage1/presets/architectures/qwen2.5-32b.json",
    "stage1/pools/sft/instructions.jsonl",
    "stage1/pools/sft/instructions_large.jsonl",
    "stage1/pools/sft/exemplars.jsonl",
    "stage1/pools/eval/items.jsonl",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel built from the checkout, and the folder it was installed into (no dependencies)."""
    import setuptools

    wheels = tmp_path_factory.mktemp("wheels")
    isolation = [] if int(setuptools.__version__.split(".")[0]) >= 77 else ["--use-pep517"]
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *(["--no-build-isolation"] if not isolation else []),
             "-w", str(wheels), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, text=True, timeout=300)
    [wheel] = wheels.glob("stage1-*.whl")
    target = tmp_path_factory.mktemp("site")
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, text=True, timeout=300)
    return wheel, target


def _in_empty_folder(target: Path, folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "200"}
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_wheel_carries_the_presets_and_pools(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names
    assert "cli.py" not in names, "the checkout's launcher is not installed as a top-level module"


@pytest.mark.slow
def test_the_installed_package_runs_from_an_empty_folder(installed, tmp_path):
    _, target = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _in_empty_folder(target, empty, "-c", (
        "import json, stage1\nfrom stage1.stages.config import load_config\nc = load_config('tiny')\n"
        "print(json.dumps({'package': stage1.__file__, 'pool': c.data.instructions}))"
    ))
    assert where.returncode == 0, where.stderr
    found = json.loads(where.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(target) and Path(found["pool"]).is_relative_to(target)
    assert Path(found["pool"]).is_file()
    plan = _in_empty_folder(target, empty, "-m", "stage1", "plan", "--config", "qwen2.5-32b")
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    assert "sft" in plan.stdout and "merge" in plan.stdout
    assert not any(empty.iterdir()), "plan writes nothing"
