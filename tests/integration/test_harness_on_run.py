"""On the session's shared tiny run: every DPO method check passed and was recorded, and a
mislabelled evaluation variant (the dpo variant evaluated on the SFT model) is refused before any
generation, by the variant identity check (``stage1.eval.variant_identity``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_the_shared_tiny_run_recorded_every_check_and_a_mislabelled_variant_is_refused(tiny_run, tmp_path):
    from stage1.eval.settings import EvalSettings, VariantSpec, variants_in_run
    from stage1.eval.stage import run_evaluate
    from stage1.eval.variant_identity import VariantIdentityError
    from stage1.io.layout import RunLayout

    run_dir, _ = tiny_run
    for stage in ("dpo", "dpo_only"):
        checks = json.loads((run_dir / stage / "manifest.json").read_text())["method_checks"]
        assert checks["mode"] == "error"
        assert all(checks[name]["passed"] for name in ("rows_decode", "step0_loss", "adapter_moved", "heldout_margin")), checks
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert results["provenance"]["variants"]["dpo"]["lineage"]["adapter_kind"] == "dpo_adapter"
    variants = [spec if spec.name != "dpo" else VariantSpec("dpo", run_dir / "merged")  # dpo evaluated on the SFT model
                for spec in variants_in_run(RunLayout(run_dir), "none")]
    with pytest.raises(VariantIdentityError, match="dpo: is labelled dpo but holds no adapter"):
        run_evaluate(EvalSettings(), variants=variants, items_path=ROOT / "stage1" / "pools" / "eval" / "items.jsonl",
                     out_dir=tmp_path / "eval", training_paths=[run_dir / "sft_data" / "train.jsonl", run_dir / "pairs" / "train.jsonl"])
    assert not (tmp_path / "eval").exists()
