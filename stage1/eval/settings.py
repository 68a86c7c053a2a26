"""The evaluation stage's settings (the ``eval:`` YAML section) and the description of one variant.

Defaults are the tiny preset. Variants are named ``base_raw``, ``base``, ``sft``, ``dpo`` and
``dpo_only`` everywhere (files, JSON keys, tables, CLI flags), and the DPO arms of
``training.dpo_arms`` ``dpo_rules`` and ``dpo_policy``, after the pairs each trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

from stage1.config.load import TypedSection
from stage1.config.typed import settings_from_dict
from stage1.core.errors import ConfigError
from stage1.hf.generation import VLLMSettings
from stage1.hf.models import QUANTIZATIONS
from stage1.io.layout import DPO_ARMS, DPO_ONLY, SOURCE_ARMS, RunLayout, source_arm

#: The DPO arms' variants: each exists only in a run that trains it (``training.dpo_arms``).
ARM_VARIANTS = tuple(arm.name for arm in SOURCE_ARMS)
VARIANT_NAMES = ("base_raw", "base", "sft", *(arm.name for arm in DPO_ARMS))
#: The Benjamini–Hochberg family of the comparisons a run with DPO arms adds (``settings_for_run``).
ARMS_FAMILY = "pair_sources"
BACKENDS = ("transformers", "vllm")
#: before->after: the format alone, SFT, DPO after SFT, DPO alone, and what SFT adds under DPO.
DEFAULT_COMPARISONS = ("base_raw->base", "base->sft", "sft->dpo", "base->dpo_only", "dpo_only->dpo")
#: Benjamini–Hochberg families: the comparisons that answer the study are corrected together; the
#: format alone (base_raw->base, trivially significant on END and runaway) is a separate check, so
#: its tiny p-values do not loosen the threshold of the others.
DEFAULT_FAMILIES = {
    "study": ("base->sft", "sft->dpo", "base->dpo_only", "dpo_only->dpo"),
    "format_sensitivity": ("base_raw->base",),
}


def parse_comparison(text: str, field: str = "eval.comparisons") -> tuple[str, str]:
    """``"base->sft"`` → ``("base", "sft")``.

    Raises:
        ConfigError: not two known, different variant names joined by ``->``.
    """
    before, sep, after = text.partition("->")
    before, after = before.strip(), after.strip()
    if not sep or before not in VARIANT_NAMES or after not in VARIANT_NAMES or before == after:
        raise ConfigError(
            f"{text!r} is not BEFORE->AFTER with two different variants",
            field=field,
            hint=f"variants: {', '.join(VARIANT_NAMES)}; e.g. base->sft",
        )
    return before, after


#: Most bootstrap resamples per comparison and criterion: each is an index array over all items.
MAX_BOOTSTRAP_SAMPLES = 100_000


@dataclass(frozen=True)
class EvalSettings:
    """How evaluation generates, scores and compares. One-line docs per field; defaults = tiny preset."""

    variants: tuple[str, ...] = VARIANT_NAMES  # which variants to evaluate (others are skipped and reported)
    comparisons: tuple[str, ...] = DEFAULT_COMPARISONS  # paired comparisons, each "before->after"
    families: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_FAMILIES))  # BH families: name -> comparisons corrected together
    limit: int | None = None  # evaluate a seeded sample of N items, stratified by category (None: all)
    max_new_tokens: int = 48  # generation length limit (hitting it is stop reason max_tokens)
    batch_size: int = 8  # prompts per batched generate call (left padding)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"  # dtype of unquantised weights; match training
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where generation runs; auto = cuda when available
    backend: Literal["transformers", "vllm"] = "transformers"  # generation engine; vllm needs CUDA and stage1[vllm]
    seed: int = 0  # seeds the bootstrap and the eval.limit sample (decoding is greedy)
    bootstrap_samples: int = 1000  # paired bootstrap resamples per comparison and criterion
    confidence: float = 0.95  # Wilson and bootstrap interval level
    q: float = 0.05  # Benjamini–Hochberg false discovery rate within each family; significant when p_adjusted <= q
    min_category_items: int = 30  # a category gets its own table at this many items; smaller ones are pooled
    allow_quantization_mismatch: bool = False  # evaluate a checkpoint with another quantisation than it was trained with
    in_process: bool = False  # run variants in this process instead of one subprocess each (tests, CPU speed)
    memory_tolerance_mib: int = 512  # GPU memory a finished variant may leave above the starting level
    memory_wait_s: float = 60.0  # how long to wait for memory to return before refusing to load the next variant
    # engine sizing with backend: vllm; evaluation prompts share no prefix, so no prefix caching
    vllm: VLLMSettings = field(default_factory=lambda: VLLMSettings(enable_prefix_caching=False))

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}", field="eval.backend", hint=f"one of: {', '.join(BACKENDS)}")
        if self.backend == "vllm" and self.in_process:
            raise ConfigError("vllm runs each variant in its own process", field="eval.in_process",
                              hint="set eval.in_process: false, or eval.backend: transformers")
        if not self.variants:  # refused at load, before a command touches the run's files
            raise ConfigError("names no variant (an empty list)", field="eval.variants", hint=f"list some of: {', '.join(VARIANT_NAMES)}")
        for name in self.variants:
            if name not in VARIANT_NAMES:
                raise ConfigError(f"unknown variant {name!r}", field="eval.variants", hint=f"one of: {', '.join(VARIANT_NAMES)}")
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError("a variant is listed twice", field="eval.variants")
        for text in self.comparisons:
            parse_comparison(text)
        self._check_families()
        positive = {"max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size, "bootstrap_samples": self.bootstrap_samples,
                    "min_category_items": self.min_category_items}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"must be at least 1, got {value}", field=f"eval.{name}")
        if self.bootstrap_samples > MAX_BOOTSTRAP_SAMPLES:
            raise ConfigError(f"must be at most {MAX_BOOTSTRAP_SAMPLES:,}, got {self.bootstrap_samples:,}", field="eval.bootstrap_samples",
                              hint="10,000 resamples already give p-values to 0.0001; more only costs time and memory")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"must be at least 1 (or null for all items), got {self.limit}", field="eval.limit")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"must be in (0, 1), got {self.confidence}", field="eval.confidence")
        if not 0.0 < self.q <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.q}", field="eval.q")
        if self.memory_tolerance_mib < 0 or self.memory_wait_s < 0:
            raise ConfigError("memory_tolerance_mib and memory_wait_s must be >= 0", field="eval.memory_tolerance_mib")

    def _check_families(self) -> None:
        """Every comparison in exactly one family; members are comparisons (unlisted ones are ignored)."""
        owner: dict[tuple[str, str], str] = {}
        for name, members in self.families.items():
            if not name.strip() or not members:
                raise ConfigError(f"family {name!r} needs a name and at least one comparison", field=f"eval.families.{name}")
            for text in members:
                pair = parse_comparison(text, field=f"eval.families.{name}")
                if pair in owner:
                    raise ConfigError(f"{text!r} is in two families ({owner[pair]} and {name})", field=f"eval.families.{name}",
                                      hint="a comparison is corrected within one family only")
                owner[pair] = name
        for text in self.comparisons:
            if parse_comparison(text) not in owner:
                raise ConfigError(f"comparison {text!r} is in no family", field="eval.families",
                                  hint=f"add it to one of: {', '.join(self.families) or '(none named)'}, or name a new family for it")

    @property
    def comparison_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(parse_comparison(text) for text in self.comparisons)

    @property
    def family_pairs(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """``{family: ((before, after), ...)}`` as ``eval_summary.summarise`` takes them."""
        return {name: tuple(parse_comparison(text) for text in members) for name, members in self.families.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, source: str | None = None) -> EvalSettings:
        """Build from the ``eval:`` YAML section.

        Raises:
            ConfigError: unknown key (naming the nearest valid one), wrong type, or impossible value.
        """
        return settings_from_dict(cls, data, section="eval", source=source)


@dataclass(frozen=True)
class VariantSpec:
    """One model to evaluate: a model folder, optionally an adapter on it, and how it is prompted.

    base = <run>/model; sft = <run>/merged; dpo = <run>/merged + <run>/dpo/adapter;
    dpo_only = <run>/model + <run>/dpo_only/adapter; base_raw = <run>/model with use_format=False.
    """

    name: str
    model_dir: Path
    adapter_dir: Path | None = None
    use_format: bool = True
    quantization: str = "none"
    pairs_source: str | None = None  # a DPO arm's: the source of the only pairs it trained on

    def __post_init__(self):
        if self.name not in VARIANT_NAMES:
            raise ConfigError(f"unknown variant {self.name!r}", field="variant", hint=f"one of: {', '.join(VARIANT_NAMES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"unknown quantization {self.quantization!r}", field=f"{self.name}.quantization",
                              hint=f"one of: {', '.join(QUANTIZATIONS)}")
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.adapter_dir is not None:
            object.__setattr__(self, "adapter_dir", Path(self.adapter_dir))

    def to_dict(self) -> dict[str, Any]:
        plain = {
            "name": self.name,
            "model_dir": str(self.model_dir),
            "adapter_dir": None if self.adapter_dir is None else str(self.adapter_dir),
            "use_format": self.use_format,
            "quantization": self.quantization,
        }
        if self.pairs_source is not None:  # only an arm's: every other variant's job keeps its fingerprint
            plain["pairs_source"] = self.pairs_source
        return plain

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantSpec:
        return cls(
            name=data["name"],
            model_dir=Path(data["model_dir"]),
            adapter_dir=None if data.get("adapter_dir") is None else Path(data["adapter_dir"]),
            use_format=bool(data.get("use_format", True)),
            quantization=data.get("quantization", "none"),
            pairs_source=data.get("pairs_source"),
        )


def variants_in_run(layout: RunLayout, quantization: str, sft_handoff: str = "merge", dpo_arms: Sequence[str] = ()) -> list[VariantSpec]:
    """The models a run compares, each built from files in its run directory (``dpo_only`` when
    trained, and one ``dpo_<source>`` per DPO arm: the SFT model with that arm's adapter).

    With ``sft_handoff: adapter`` nothing was merged: ``sft`` is the base with the SFT adapter and
    ``dpo`` (and each arm) the base with DPO's continuation of it (SFT + DPO in one adapter).
    """
    if sft_handoff == "adapter":
        sft = VariantSpec("sft", layout.model, adapter_dir=layout.sft_adapter, quantization=quantization)
        dpo = VariantSpec("dpo", layout.model, adapter_dir=layout.adapter("dpo"), quantization=quantization)
    else:
        sft = VariantSpec("sft", layout.merged, quantization=quantization)
        dpo = VariantSpec("dpo", layout.merged, adapter_dir=layout.adapter("dpo"), quantization=quantization)
    specs = [
        VariantSpec("base_raw", layout.model, use_format=False, quantization=quantization),
        VariantSpec("base", layout.model, quantization=quantization),
        sft,
        dpo,
    ]
    baseline = [DPO_ONLY] if layout.adapter(DPO_ONLY.folder).exists() else []
    for arm in (*baseline, *map(source_arm, dpo_arms)):  # each on its parent: the base, or SFT as dpo is
        model_dir = layout.model if arm.parent == "base" else dpo.model_dir
        specs.append(VariantSpec(arm.name, model_dir, adapter_dir=layout.adapter(arm.folder), quantization=quantization,
                                 pairs_source=arm.pairs_source))
    return specs


def arm_comparisons(dpo_arms: Sequence[str]) -> tuple[str, ...]:
    """What a run with DPO arms compares: each arm against SFT (its reference), then arm against
    arm in the order listed (``dpo_rules->dpo_policy``: what policy pairs give over rule-made ones)."""
    arms = [source_arm(source).name for source in dpo_arms]
    return (*(f"sft->{arm}" for arm in arms), *(f"{before}->{after}" for before, after in combinations(arms, 2)))


def settings_for_run(settings: EvalSettings, dpo_arms: Sequence[str] = ()) -> EvalSettings:
    """The evaluation settings of a run that trains ``dpo_arms``: an arm's variant is evaluated only
    where it is trained (so a run without arms evaluates, records and fingerprints exactly what it
    did before arms existed), and the arms' comparisons (``arm_comparisons``) are added to those
    configured, in their own family (``ARMS_FAMILY``) unless a family already lists them.
    """
    trained = {source_arm(source).name for source in dpo_arms}
    variants = tuple(name for name in settings.variants if name not in ARM_VARIANTS or name in trained)
    configured = set(settings.comparison_pairs)
    in_family = {pair for members in settings.family_pairs.values() for pair in members}
    added = [text for text in arm_comparisons(dpo_arms) if parse_comparison(text) not in configured]
    if variants == settings.variants and not added:
        return settings
    families = dict(settings.families)
    unowned = tuple(text for text in added if parse_comparison(text) not in in_family)
    if unowned:
        families[ARMS_FAMILY] = (*families.get(ARMS_FAMILY, ()), *unowned)
    return replace(settings, variants=variants, comparisons=(*settings.comparisons, *added), families=families)


#: The ``eval:`` section of a configuration: its seed follows ``run.seed`` and its backend
#: ``run.generation_backend``, unless it sets its own.
SECTION = TypedSection("eval", EvalSettings, follows={"seed": "run.seed", "backend": "run.generation_backend"})
