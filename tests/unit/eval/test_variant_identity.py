"""Evaluation variants are the models their names say, read from their hashes and lineage."""

from __future__ import annotations

import pytest

from stage1.core.errors import EXIT_INPUT
from stage1.eval.variant_identity import VariantIdentityError, check_identities, identity_problems


def facts(model_hash: str, adapter_hash: str | None = None, *, model_kind=None, adapter_kind=None, parent_kind=None,
          sft_adapter_hash=None) -> dict:
    return {"model_hash": model_hash, "adapter_hash": adapter_hash, "adapter_dir": None if adapter_hash is None else f"{adapter_hash}/",
            "lineage": {"model_kind": model_kind, "adapter_kind": adapter_kind, "parent_kind": parent_kind,
                        "sft_adapter_hash": sft_adapter_hash}}


def merge_run() -> dict:
    return {
        "base_raw": facts("B"),
        "base": facts("B"),
        "sft": facts("M", model_kind="merged"),
        "dpo": facts("M", "D", model_kind="merged", adapter_kind="dpo_adapter", parent_kind="merged"),
        "dpo_only": facts("B", "O", adapter_kind="dpo_adapter", parent_kind="base"),
    }


def adapter_run() -> dict:
    return {
        "base": facts("B"),
        "sft": facts("B", "S", adapter_kind="sft_adapter"),
        "dpo": facts("B", "D", adapter_kind="dpo_adapter", parent_kind="sft_adapter", sft_adapter_hash="S"),
    }


def test_a_correctly_labelled_run_passes_in_both_handoffs():
    assert identity_problems(merge_run()) == []
    assert identity_problems(adapter_run()) == []
    check_identities(merge_run())


def test_dpo_evaluated_on_the_sft_model_is_caught():
    described = {**merge_run(), "dpo": merge_run()["sft"]}
    problems = identity_problems(described)
    assert any(p.startswith("dpo: is labelled dpo but holds no adapter") for p in problems)
    assert any("sft and dpo are the same weights and adapter" in p for p in problems)
    with pytest.raises(VariantIdentityError, match="mislabelled") as error:
        check_identities(described)
    assert error.value.exit_code == EXIT_INPUT


def test_sft_and_dpo_swapped_is_caught():
    run = merge_run()
    problems = identity_problems({**run, "sft": run["dpo"], "dpo": run["sft"]})
    assert any(p.startswith("sft: is labelled sft but its adapter is a dpo_adapter") for p in problems)


def test_the_base_labelled_sft_and_dpo_only_labelled_dpo_are_caught():
    run = merge_run()
    assert identity_problems({**run, "sft": run["base"]})[0].startswith("sft: is labelled sft but is neither")
    problems = identity_problems({**run, "dpo": run["dpo_only"]})
    assert any("not a DPO adapter trained on the SFT model" in p for p in problems)
    assert any(p.startswith("dpo_only: is labelled dpo_only but holds a dpo_adapter adapter trained on merged")
               for p in identity_problems({**run, "dpo_only": run["dpo"]}))
    assert identity_problems({**run, "base": run["sft"]})[0].startswith("base: is labelled base but is a merged model")


def test_a_dpo_adapter_on_other_weights_or_another_sft_adapter_is_caught():
    run = merge_run()
    moved = {**run, "dpo": {**run["dpo"], "model_hash": "X"}}
    assert any("other weights than sft's" in p for p in identity_problems(moved))
    other = adapter_run()
    other["dpo"] = facts("B", "D", adapter_kind="dpo_adapter", parent_kind="sft_adapter", sft_adapter_hash="S2")
    assert identity_problems(other) == ["dpo: its adapter continues another SFT adapter than the one evaluated as sft"]
    assert any("dpo_only: its adapter sits on other weights" in p
               for p in identity_problems({**run, "dpo_only": {**run["dpo_only"], "model_hash": "M"}}))
