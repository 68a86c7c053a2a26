"""The samples stage: the merged SFT model's own completions, scored, as policy negatives.

For every training instruction, ``k`` completions are sampled from the merged SFT model with the
prompt SFT trained on (``render_prompt``, no few-shot), the shared stop strings and backends, and
the generation journal of SFT-data generation (``stage1.io.journal``): a rerun after a kill
decodes only the missing batches and writes the same bytes. Each completion is parsed
(``format.parse_completion``, inside the backend) and scored with the evaluation criteria that
apply to the instruction (``stage1.core.criteria.score_response``, the code ``evaluate`` runs), so
"better" means what the report measures; ``negatives.policy.criteria`` narrows the criteria that
pick pairs, and the manifest names them.

A training instruction is scored as an evaluation item with no reference, constraint or topic
keywords, marked safe (SFT instructions are requests to answer): ``stopped_with_end``,
``no_runaway``, ``no_unwarranted_refusal`` and ``not_degenerate`` apply. One pair per instruction
(``choose_pair``): rejected = the worst-scoring sample; chosen = the SFT reference answer, or the
best sample that passes every selection criterion (``negatives.policy.chosen``). Groups are
skipped and counted by reason (``SKIP_REASONS``). Outputs: ``samples.jsonl`` (every sample with
its verdicts), ``negatives.jsonl`` (``NegativeRecord`` rows with ``negative_source: "policy"`` and
the failed criteria as their kind) and ``manifest.json``, last; the journal is then deleted.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.criteria import score_response
from stage1.core.errors import InputError
from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.format import STOP_END, render_completion, render_prompt
from stage1.core.records import NegativeRecord, SFTExample, check_unique_ids, plain_fields, policy_kind
from stage1.core.seeds import sample_keys, sample_seeds
from stage1.core.text_keys import dedup_key
from stage1.samples.settings import PolicySettings

STAGE = "samples"
SAMPLES_FILE = "samples.jsonl"
NEGATIVES_FILE = "negatives.jsonl"
#: Why an instruction gave no pair: every sample passed every selection criterion (nothing to
#: reject); no sample passed them all (``chosen: sample`` has no chosen); the chosen scores no
#: better than the worst sample, or is the same text (a pair that teaches nothing); every failing
#: sample is blank (a completion of nothing but eos: a pair's rejected may not be empty).
SKIP_REASONS = ("all_pass", "all_fail", "tie", "empty")
#: The variant name scored samples carry (the merged SFT model is the ``sft`` variant).
SAMPLE_VARIANT = "sft"


# ---------------------------------------------------------------- pure core


@dataclass(frozen=True)
class ScoredSample:
    """One completion with the verdicts of the selection criteria that apply (None: n/a)."""

    number: int
    completion_text: str
    response: str
    stop_reason: str
    runaway: bool
    num_tokens: int
    verdicts: dict[str, bool | None]

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(name for name, verdict in self.verdicts.items() if verdict is False)

    @property
    def score(self) -> float:
        """Share of applicable selection criteria passed (1.0 when none applies)."""
        applicable = [verdict for verdict in self.verdicts.values() if verdict is not None]
        return sum(applicable) / len(applicable) if applicable else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "completion_text": self.completion_text, "response": self.response,
                "stop_reason": self.stop_reason, "runaway": self.runaway, "num_tokens": self.num_tokens,
                "verdicts": dict(self.verdicts), "score": self.score}


def read_back(completion: str) -> str:
    """A completion as a model reads it back (NFC, ``\\n`` line endings), so a rejected sample
    meets the pair contract (``train.data.pair_format_problem``); leading space kept."""
    return unicodedata.normalize("NFC", completion.replace("\r\n", "\n").replace("\r", "\n"))


def training_item(example: SFTExample) -> EvalItem:
    """A training instruction as the criteria see it (see the module docstring)."""
    # A request that should be declined is scored as evaluation scores it: a refusal is wanted there.
    return EvalItem(id=example.id, instruction=example.instruction, category=example.category,
                    safe=not example.refusal_expected, refusal_expected=example.refusal_expected)


def score_sample(example: SFTExample, number: int, completion_text: str, response: str, stop_reason: str, runaway: bool,
                 num_tokens: int, criteria: Sequence[str]) -> ScoredSample:
    """The selection criteria's verdicts on one completion, through ``criteria.score_response``."""
    scored = EvalResponse(item_id=example.id, variant=SAMPLE_VARIANT, prompt=render_prompt(example.instruction),
                          completion_text=completion_text, response=response, stop_reason=stop_reason, runaway=runaway,
                          num_tokens=num_tokens)
    verdicts = score_response(training_item(example), scored)
    return ScoredSample(number, completion_text, response, stop_reason, runaway, num_tokens,
                        {name: verdicts[name] for name in criteria})


def reference_sample(example: SFTExample, criteria: Sequence[str]) -> ScoredSample:
    """The SFT reference answer scored like a sample that ended with ``END``."""
    return score_sample(example, -1, render_completion(example.response), example.response, STOP_END, False, 0, criteria)


def choose_pair(example: SFTExample, samples: Sequence[ScoredSample], criteria: Sequence[str],
                chosen_from: str) -> tuple[NegativeRecord | None, str | None]:
    """The policy negative for one instruction, or None and the reason it was skipped.

    Rejected = the lowest-scoring sample that is not blank (the first such by sample number); chosen = the reference
    (``chosen_from == "reference"``) or the highest-scoring sample that passes every selection
    criterion (the first such). See ``SKIP_REASONS``.
    """
    if all(not sample.failed for sample in samples):
        return None, "all_pass"
    candidates = [sample for sample in samples if sample.failed and sample.completion_text.strip()]
    if not candidates:
        return None, "empty"
    worst = min(candidates, key=lambda sample: (sample.score, sample.number))
    if chosen_from == "reference":
        best = reference_sample(example, criteria)
        chosen_text = None
    else:
        passing = [sample for sample in samples if not sample.failed]
        if not passing:
            return None, "all_fail"
        best = passing[0]
        chosen_text = render_completion(best.response)
    rejected = read_back(worst.completion_text)
    if best.score <= worst.score or dedup_key(render_completion(best.response)) == dedup_key(rejected):
        return None, "tie"
    negative = NegativeRecord(
        instruction_id=example.id, kind=policy_kind(worst.failed), completion=rejected,
        method=f"policy_sample_{worst.number}", negative_source="policy", chosen=chosen_text,
    )
    return negative, None


def policy_negatives(examples: Sequence[SFTExample], scored: dict[str, list[ScoredSample]], settings: PolicySettings
                     ) -> tuple[list[NegativeRecord], dict[str, Any]]:
    """One negative per instruction where ``choose_pair`` finds one; counts by kind and skip reason."""
    criteria = settings.selection_criteria
    negatives: list[NegativeRecord] = []
    skipped: Counter[str] = Counter({reason: 0 for reason in SKIP_REASONS})
    for example in examples:
        negative, reason = choose_pair(example, scored[example.id], criteria, settings.chosen)
        if negative is None:
            skipped[reason] += 1
        else:
            negatives.append(negative)
    counts = {
        "instructions": len(examples),
        "samples": sum(len(scored[e.id]) for e in examples),
        "pairs": len(negatives),
        "skipped": dict(skipped),
        "by_kind": dict(sorted(Counter(n.kind for n in negatives).items())),
        "chosen_from": settings.chosen,
        "selection_criteria": list(criteria),
    }
    return negatives, counts


# ---------------------------------------------------------------- shell


def _generate(settings: PolicySettings, examples: list[SFTExample], model_dir: Path, backend_name: str, quantization: str,
              out: Path) -> tuple[list[Any], Path, dict[str, int]]:
    """Every sample, through the journal (as ``stage1.sft_data.stage._generate``)."""
    from stage1.core.generation import GenerationSettings
    from stage1.hf.backends import generate_journaled
    from stage1.hf.models import load_tokenizer

    keys = sample_keys((example.id for example in examples), settings.k)
    prompts = [render_prompt(example.instruction) for example in examples for _ in range(settings.k)]
    seeds = sample_seeds(keys, settings.seed, "policy")
    decoding = GenerationSettings(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size, do_sample=True,
                                  temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed)
    tokenizer = load_tokenizer(model_dir)
    return generate_journaled(out, model_dir, tokenizer, keys=keys, prompts=prompts, seeds=seeds, decoding=decoding,
                              backend=backend_name, quantization=quantization, dtype=settings.dtype,
                              device_map=settings.device_map, seed=settings.seed, vllm=settings.vllm, stage="samples")


def run_samples(
    settings: PolicySettings,
    *,
    sft_path: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    backend: str = "transformers",
    quantization: str = "none",
    on_bad_rows: str = "stop",
) -> dict[str, Any]:
    """Sample, score and choose; write ``samples.jsonl``, ``negatives.jsonl`` and the manifest.

    Args:
        model_dir: the merged SFT model (the model DPO starts from).
        quantization: how it is loaded (``training.quantization``: DPO holds it the same way).

    Raises:
        InputError: a bad SFT row, duplicate ids, or no rows.
        ConfigError: an unknown backend.
    """
    from stage1.core.records import BadRows
    from stage1.io.atomic import atomic_write_files, jsonl_bytes
    from stage1.io.manifest import build_manifest, write_manifest
    from stage1.io.records import read_records

    sft_source, out, model_dir = Path(sft_path), Path(out_dir), Path(model_dir)
    bad_rows = BadRows()
    examples = read_records(sft_source, SFTExample, on_bad_rows=on_bad_rows, bad_rows=bad_rows)
    check_unique_ids(examples, sft_source)
    if not examples:
        raise InputError("no usable SFT examples to sample for", path=sft_source)
    generations, journal_path, resumed = _generate(settings, list(examples), model_dir, backend, quantization, out)
    criteria = settings.selection_criteria
    scored: dict[str, list[ScoredSample]] = {example.id: [] for example in examples}
    for (instruction_id, number), generation, example in zip(
        sample_keys((example.id for example in examples), settings.k), generations, (e for e in examples for _ in range(settings.k)), strict=True
    ):
        scored[instruction_id].append(score_sample(example, number, generation.completion_text, generation.response,
                                                   generation.stop_reason, generation.runaway, generation.num_tokens, criteria))
    negatives, counts = policy_negatives(examples, scored, settings)
    rows = ({"instruction_id": e.id, "samples": [s.to_dict() for s in scored[e.id]]} for e in examples)
    outputs = atomic_write_files({
        "samples": (out / SAMPLES_FILE, jsonl_bytes(rows)),
        "negatives": (out / NEGATIVES_FILE, jsonl_bytes(plain_fields(n) for n in negatives)),
    })
    pass_rates = {name: _pass_rate(scored, name) for name in criteria}
    manifest = build_manifest(
        STAGE, config=settings_to_dict(settings), seed=settings.seed,
        inputs={"sft": sft_source, "model_config": model_dir / "config.json"}, outputs=outputs,
        counts={**counts, "sample_pass_rates": pass_rates},
        extra={"backend": backend, "quantization": quantization, "bad_rows": bad_rows.to_dict(), "generation_journal": resumed},
    )
    write_manifest(out, manifest)
    journal_path.unlink(missing_ok=True)  # the outputs and manifest now hold everything it had
    return manifest


def _pass_rate(scored: dict[str, list[ScoredSample]], name: str) -> float | None:
    verdicts = [sample.verdicts[name] for samples in scored.values() for sample in samples if sample.verdicts[name] is not None]
    return sum(verdicts) / len(verdicts) if verdicts else None
