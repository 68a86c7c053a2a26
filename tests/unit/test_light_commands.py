"""Commands that load no model import no torch, bitsandbytes, transformers, PEFT or TRL: they answer
in the time it takes to read their files, not the seconds those imports take."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stage1.config.presets import POOLS_DIR

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "bitsandbytes", "transformers", "peft", "trl")
# Runs the command line in this process, then names each heavy module it imported.
PROBE = (
    "import sys\nfrom stage1.cli import main\nstatus = main(sys.argv[1:])\n"
    f"print('HEAVY', sorted(name for name in {HEAVY!r} if name in sys.modules), status)\n"
)


def _heavy_imports(argv: list[str]) -> tuple[list[str], int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    line = next((text for text in done.stdout.splitlines() if text.startswith("HEAVY ")), None)
    assert line is not None, done.stderr
    names, status = line[len("HEAVY "):].rsplit(" ", 1)
    return json.loads(names.replace("'", '"')), int(status)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("light")
    items = [json.loads(line) for line in (POOLS_DIR / "eval" / "items.jsonl").read_text().splitlines()[:20]]
    (folder / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    responses = [{"item_id": item["id"], "variant": "mine", "response": "Paris."} for item in items]
    (folder / "responses.jsonl").write_text("".join(json.dumps(row) + "\n" for row in responses))
    return {"items": folder / "items.jsonl", "responses": folder / "responses.jsonl", "out": folder / "scored"}


def test_score_imports_no_model_library(files):
    argv = ["score", "--in", f"items={files['items']}", "--in", f"responses={files['responses']}", "--out", str(files["out"])]
    heavy, status = _heavy_imports(argv)
    assert (heavy, status) == ([], 0)
    assert (files["out"] / "results.json").is_file(), "the probe ran the command, not only imported it"


def test_check_leakage_imports_no_model_library(files):
    heavy, status = _heavy_imports(["check-leakage", "--in", f"train={POOLS_DIR / 'sft' / 'instructions.jsonl'}",
                                    "--in", f"eval_items={files['items']}"])
    assert (heavy, status) == ([], 0)


def test_the_probe_sees_a_command_that_does_import_them():
    """The same probe on ``plan``, which checks the TRL sections: it must report torch, or the two
    tests above could pass on a probe that sees nothing."""
    heavy, status = _heavy_imports(["plan"])
    assert "torch" in heavy and status == 0


def test_negatives_on_files_imports_no_torch(tmp_path):
    """The negatives stage on explicit files reads and writes JSONL: no torch, bitsandbytes, PEFT or
    TRL (its config's training sections are not checked against TRL for a stage that trains nothing)."""
    heavy, status = _heavy_imports(["negatives", "--in", f"sft={POOLS_DIR / 'sft' / 'instructions.jsonl'}",
                                    "--out", str(tmp_path / "negatives")])
    assert status == 0 and (tmp_path / "negatives" / "negatives.jsonl").is_file()
    assert not {"torch", "bitsandbytes", "peft", "trl"} & set(heavy), heavy
