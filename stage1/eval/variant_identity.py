"""Each evaluated variant is the model its name says: checked from its weights' lineage and hashes.

A study that evaluates the SFT model under the name ``dpo`` reports DPO's effect as zero, and one
that evaluates the DPO adapter as ``sft`` credits SFT with DPO's work; nothing in the scores shows
it. ``describe_variant`` (``stage1.eval.stage``) records each variant's weights hash, adapter hash
and the lineage of both (``provenance.variants`` in ``results.json``); ``identity_problems`` checks
them against what each name means in this pipeline:

- ``base``, ``base_raw``: the base model, no adapter, not a merged model;
- ``sft``: the merged SFT model (``sft_handoff: merge``) or the base with the SFT adapter (``adapter``);
- ``dpo`` and the DPO arms: a DPO adapter trained on the SFT model (its ``parent_kind`` merged or
  ``sft_adapter``), on the same weights as ``sft`` (merge) or continuing ``sft``'s adapter (adapter);
- ``dpo_only``: a DPO adapter trained on the base, on the base's weights;
- no two variants other than ``base`` and ``base_raw`` are the same weights and adapter.

Pure: takes the described dicts, returns the problems. A variant evaluated outside this pipeline's
layout with no lineage at all (no adapter, no ``lineage.json``) is what ``base`` is.
"""

from __future__ import annotations

from typing import Any

from stage1.core.errors import LineageError

DPO_ON_SFT = ("dpo", "dpo_rules", "dpo_policy")
SFT_PARENT_KINDS = ("merged", "sft_adapter")


class VariantIdentityError(LineageError):
    """A variant's weights are not the model its name says (exit 2, like any lineage error)."""


def _kind_problem(name: str, facts: dict[str, Any]) -> str | None:
    lineage = facts.get("lineage") or {}
    model_kind, adapter_kind, parent_kind = lineage.get("model_kind"), lineage.get("adapter_kind"), lineage.get("parent_kind")
    adapter = facts.get("adapter_dir")
    if name in ("base", "base_raw"):
        if adapter is not None or model_kind == "merged":
            return f"is labelled {name} but is {'an adapter' if adapter is not None else 'a merged model'}, not the base"
    elif name == "sft":
        if adapter is None and model_kind != "merged":
            return "is labelled sft but is neither the merged SFT model nor the base with the SFT adapter"
        if adapter is not None and adapter_kind != "sft_adapter":
            return f"is labelled sft but its adapter is a {adapter_kind or 'folder without lineage'}, not the SFT adapter"
    elif name in DPO_ON_SFT:
        if adapter_kind != "dpo_adapter" or parent_kind not in SFT_PARENT_KINDS:
            found = "no adapter" if adapter is None else f"a {adapter_kind} adapter trained on {parent_kind or 'an unknown parent'}"
            return f"is labelled {name} but holds {found}, not a DPO adapter trained on the SFT model"
    elif name == "dpo_only" and (adapter_kind != "dpo_adapter" or parent_kind != "base"):
        found = "no adapter" if adapter is None else f"a {adapter_kind} adapter trained on {parent_kind or 'an unknown parent'}"
        return f"is labelled dpo_only but holds {found}, not a DPO adapter trained on the base"
    return None


def _relation_problems(described: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    base, sft = described.get("base") or described.get("base_raw"), described.get("sft")
    for name in DPO_ON_SFT:
        dpo = described.get(name)
        if dpo is None or sft is None:
            continue
        lineage = dpo.get("lineage") or {}
        if lineage.get("parent_kind") == "merged" and dpo["model_hash"] != sft["model_hash"]:
            problems.append(f"{name}: its adapter sits on other weights than sft's (merged model {dpo['model_hash'][:12]} vs {sft['model_hash'][:12]})")
        if lineage.get("parent_kind") == "sft_adapter" and lineage.get("sft_adapter_hash") not in (None, sft.get("adapter_hash")):
            problems.append(f"{name}: its adapter continues another SFT adapter than the one evaluated as sft")
    if base is not None and "dpo_only" in described and described["dpo_only"]["model_hash"] != base["model_hash"]:
        problems.append("dpo_only: its adapter sits on other weights than base's")
    seen: dict[tuple[Any, Any], str] = {}
    for name, facts in described.items():
        identity = (facts["model_hash"], facts.get("adapter_hash"))
        other = seen.setdefault(identity, name)
        if other != name and {other, name} != {"base", "base_raw"}:
            problems.append(f"{other} and {name} are the same weights and adapter: one of them is mislabelled")
    return problems


def identity_problems(described: dict[str, dict[str, Any]]) -> list[str]:
    """What contradicts the variants' names, each naming its variant (empty when all agree)."""
    problems = [f"{name}: {problem}" for name, facts in described.items() if (problem := _kind_problem(name, facts))]
    return problems + _relation_problems(described)


def check_identities(described: dict[str, dict[str, Any]]) -> None:
    """Raises: VariantIdentityError naming every mislabelled variant."""
    problems = identity_problems(described)
    if problems:
        raise VariantIdentityError("evaluation variants are mislabelled: " + "; ".join(problems)
                                   + " (each variant's model_hash, adapter_hash and lineage are in provenance.variants)")
