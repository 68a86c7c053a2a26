"""The SFT data stage: instructions in, filtered and split instruction/response examples out.

Two sources of responses:

- ``file``: the responses come with the instructions (the tiny default, and any curated set);
- ``model``: the base model writes them by few-shot completion in the plain format: a few
  exemplars rendered with ``render_example``, blank-line separated, then ``render_prompt`` of the
  instruction. No chat template, ever.

Either way the rows pass the same filters (``stage1.sft_data.filters``), are split by normalised
instruction (``stage1.core.splits``), and are checked against the held-out evaluation items by the
leakage gate before anything is written. Outputs: ``train.jsonl`` and ``heldout.jsonl``
(``SFTExample`` rows) and ``manifest.json``, written last.

Generation is resumable: every finished batch goes to ``generations.partial.jsonl`` in the output
folder (``stage1.io.journal``), each row sampled with its own seed from (seed, generation
seed, instruction id, sample number). A rerun after a kill decodes only the missing batches and
writes the same bytes as an uninterrupted run; the journal is deleted after the manifest.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import ConfigError, InputError
from stage1.core.generation import Generation, build_fewshot_prompt
from stage1.core.leakage import LeakageSettings
from stage1.core.records import BadRows, InstructionRecord, SFTExample, check_unique_ids
from stage1.core.seeds import sample_keys, sample_seeds
from stage1.core.splits import split_by_instruction
from stage1.core.text_keys import dedup_key
from stage1.hf.backends import generate_journaled
from stage1.hf.models import load_tokenizer
from stage1.io.atomic import atomic_write_files, jsonl_bytes
from stage1.io.layout import SFT_HELDOUT_FILE as HELDOUT_FILE
from stage1.io.layout import SFT_TRAIN_FILE as TRAIN_FILE
from stage1.io.manifest import build_manifest, write_manifest
from stage1.io.records import leakage_gate, read_records
from stage1.sft_data.filters import Candidate, FilterResult, filter_candidates
from stage1.sft_data.settings import SFTDataSettings

STAGE = "sft_data"


# ---------------------------------------------------------------- pure parts


def _instruction_only(row: dict[str, Any]) -> InstructionRecord:
    """An instruction row for source=model: a supplied response column is ignored, not an error."""
    return InstructionRecord.from_dict({k: v for k, v in row.items() if k not in ("response", "source")})


def choose_exemplars(
    exemplars: Sequence[SFTExample], instruction: InstructionRecord, count: int, seed: int
) -> list[tuple[str, str]]:
    """``count`` exemplars for one instruction, never the instruction itself; seeded by (seed, id)."""
    key = dedup_key(instruction.instruction)
    pool = [e for e in exemplars if dedup_key(e.instruction) != key]
    rng = random.Random(f"{seed}:fewshot:{instruction.id}")
    chosen = rng.sample(pool, min(count, len(pool)))
    return [(e.instruction, e.response) for e in chosen]


def build_prompts(
    instructions: Sequence[InstructionRecord], exemplars: Sequence[SFTExample], settings: SFTDataSettings
) -> list[tuple[InstructionRecord, str]]:
    """(instruction, few-shot prompt) for every instruction and sample, in input order."""
    prompts = []
    for record in instructions:
        shots = choose_exemplars(exemplars, record, settings.num_fewshot, settings.seed)
        prompt = build_fewshot_prompt(shots, record.instruction)
        prompts.extend((record, prompt) for _ in range(settings.samples_per_instruction))
    return prompts


def candidates_from_generations(
    records: Sequence[InstructionRecord], generations: Sequence[Generation]
) -> list[Candidate]:
    """One candidate per generation; the sample number is added to the id when there are several."""
    counts: dict[str, int] = {}
    candidates = []
    for record, generation in zip(records, generations, strict=True):
        number = counts.get(record.id, 0)
        counts[record.id] = number + 1
        candidates.append(
            Candidate(
                id=record.id if number == 0 else f"{record.id}#{number}",
                instruction=record.instruction,
                category=record.category,
                response=generation.response,
                source="model",
                stop_reason=generation.stop_reason,
                runaway=generation.runaway,
                num_tokens=generation.num_tokens,
                refusal_expected=record.refusal_expected,
            )
        )
    return candidates


def candidates_from_file(examples: Sequence[SFTExample]) -> list[Candidate]:
    return [
        Candidate(e.id, e.instruction, e.category, e.response, "file", refusal_expected=e.refusal_expected) for e in examples
    ]


def split_counts(filtered: FilterResult, train: list[SFTExample], heldout: list[SFTExample]) -> dict[str, Any]:
    """The manifest's counts: filter counts plus split sizes and token statistics."""
    counts = filtered.counts()
    tokens = [e.num_tokens for e in filtered.kept if e.num_tokens is not None]
    counts.update(
        train=len(train),
        heldout=len(heldout),
        train_groups=len({dedup_key(e.instruction) for e in train}),
        heldout_groups=len({dedup_key(e.instruction) for e in heldout}),
        accepted_by_category=_by_category(filtered.kept),
        generated_tokens={"accepted_mean": sum(tokens) / len(tokens), "accepted_max": max(tokens)} if tokens else None,
    )
    return counts


def _by_category(examples: Sequence[SFTExample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in examples:
        counts[example.category] = counts.get(example.category, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------- shell


def _generate(
    settings: SFTDataSettings,
    instructions: list[InstructionRecord],
    exemplars: list[SFTExample],
    model_dir: Path,
    backend_name: str,
    out: Path,
) -> tuple[list[Candidate], Path, dict[str, int]]:
    """Generate every row not yet in the journal; return the candidates, the journal's path and counts."""
    prompted = build_prompts(instructions, exemplars, settings)
    prompts = [prompt for _, prompt in prompted]
    keys = sample_keys((record.id for record in instructions), settings.samples_per_instruction)
    seeds = sample_seeds(keys, settings.seed, settings.generation.seed)
    tokenizer = load_tokenizer(model_dir)
    generations, journal_path, counts = generate_journaled(
        out, model_dir, tokenizer, keys=keys, prompts=prompts, seeds=seeds, decoding=settings.generation,
        backend=backend_name, quantization=settings.quantization, dtype=settings.dtype, device_map=settings.device_map,
        seed=settings.seed, vllm=settings.vllm, stage="sft_data")
    return candidates_from_generations([record for record, _ in prompted], generations), journal_path, counts


def _make_candidates(
    settings: SFTDataSettings, records: list[Any], exemplar_rows: list[SFTExample], model_dir: str | Path | None,
    exemplars_path: Path | None, backend: str, out: Path,
) -> tuple[list[Candidate], dict[str, Path], Path | None, dict[str, int] | None]:
    """The candidates: the file's rows, or generated by the model (through the journal in ``out``).

    Returns:
        The candidates, the inputs they were made from beyond the instructions (for the manifest),
        the journal's path and its counts (None for source=file).
    """
    if settings.source != "model":
        return candidates_from_file(records), {}, None, None
    if model_dir is None:
        raise ConfigError("source=model needs a model folder", field="model.path")
    candidates, journal_path, resumed = _generate(settings, records, exemplar_rows, Path(model_dir), backend, out)
    inputs = {"model_config": Path(model_dir) / "config.json"}
    if exemplars_path is not None and exemplar_rows:
        inputs["exemplars"] = exemplars_path
    return candidates, inputs, journal_path, resumed


def _write_data(out: Path, train: list[SFTExample], heldout: list[SFTExample]) -> dict[str, Path]:
    """Write the two data files; return what ``atomic_write_files`` records of them.

    What a failure leaves: every output is encoded before the first byte is written, so bad text
    writes nothing; the two data files are written together (all temps fsynced, then renamed), so a
    full disk or a permission error leaves both as they were; the manifest comes last (the caller),
    so a failure writing it leaves new data without a matching manifest, which counts as not done.
    """
    return atomic_write_files({
        "train": (out / TRAIN_FILE, jsonl_bytes(e.to_dict() for e in train)),
        "heldout": (out / HELDOUT_FILE, jsonl_bytes(e.to_dict() for e in heldout)),
    })


def _read_sources(
    settings: SFTDataSettings, instructions_path: Path, exemplars_path: Path | None, on_bad_rows: str, bad_rows: BadRows
) -> tuple[list[Any], list[SFTExample]]:
    parse = SFTExample if settings.source == "file" else _instruction_only
    records = read_records(instructions_path, parse, on_bad_rows=on_bad_rows, bad_rows=bad_rows)
    check_unique_ids(records, instructions_path)
    if not records:
        raise InputError("no usable instruction rows", path=instructions_path, hint="the file is empty or every row was bad")
    exemplars: list[SFTExample] = []
    if settings.source == "model" and settings.num_fewshot > 0:
        if exemplars_path is None:
            raise ConfigError("source=model needs an exemplar pool", field="data.exemplars", hint="or set sft_data.num_fewshot: 0")
        exemplars = read_records(exemplars_path, SFTExample)  # a bad exemplar always stops: it shapes every prompt
        if not exemplars:
            raise InputError("no exemplars", path=exemplars_path, hint="few-shot prompting needs at least one")
    return records, exemplars


def _check_leakage(
    eval_items_path: Path, train: list[SFTExample], heldout: list[SFTExample], exemplars: list[SFTExample], settings: LeakageSettings
) -> dict[str, Any]:
    """The leakage gate over everything accepted, and the exemplars a few-shot prompt would show."""
    training_sets = {
        "sft_train": [(e.id, e.instruction) for e in train],
        "sft_heldout": [(e.id, e.instruction) for e in heldout],
    }
    if exemplars:
        training_sets["sft_exemplars"] = [(e.id, e.instruction) for e in exemplars]
    return leakage_gate(eval_items_path, training_sets, settings)


def run_sft_data(
    settings: SFTDataSettings,
    *,
    instructions_path: str | Path,
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    exemplars_path: str | Path | None = None,
    eval_items_path: str | Path | None = None,
    on_bad_rows: str = "stop",
    backend: str = "transformers",
) -> dict[str, Any]:
    """Build ``train.jsonl`` and ``heldout.jsonl`` in ``out_dir``; return the manifest.

    Args:
        model_dir: the base model (source=model only).
        exemplars_path: few-shot exemplars, in the instruction file's form (source=model only).
        eval_items_path: held-out evaluation items; when given, the leakage gate runs on the result.
            The pipeline always gives them and a run on files (the CLI's ``--in``) requires them;
            only a library caller can leave them out, and the manifest then records no gate.
        on_bad_rows: ``"stop"`` on the first bad instruction row, or ``"skip"`` and count it.
        backend: ``"transformers"`` or ``"vllm"`` (source=model only).

    With source=model, generated rows are journalled in ``out_dir`` batch by batch; calling this
    again after an interruption reuses them and returns the same outputs (see the module docstring).

    Raises:
        InputError: a bad input row (file, line, field), duplicate ids, no usable rows.
        ConfigError: source=model without a model folder or exemplars; an unknown backend.
        GateError: an evaluation instruction appears in the accepted data.
    """
    if backend not in ("transformers", "vllm"):
        raise ConfigError(f"unknown backend {backend!r}", field="run.generation_backend", hint="transformers or vllm")
    instructions_path, out = Path(instructions_path), Path(out_dir)
    exemplars = Path(exemplars_path) if exemplars_path is not None else None
    bad_rows = BadRows()
    records, exemplar_rows = _read_sources(settings, instructions_path, exemplars, on_bad_rows, bad_rows)
    candidates, model_inputs, journal_path, resumed = _make_candidates(settings, records, exemplar_rows, model_dir, exemplars, backend, out)
    inputs: dict[str, Path] = {"instructions": instructions_path, **model_inputs}
    filtered = filter_candidates(
        candidates, refusal_phrases=settings.refusal_phrases,
        keep_rescued_runaways=settings.keep_rescued_runaways, max_per_instruction=settings.max_per_instruction,
    )
    train, heldout = split_by_instruction(filtered.kept, lambda e: e.instruction, settings.heldout_fraction, settings.seed)
    leakage = None
    if eval_items_path is not None:
        leakage = _check_leakage(Path(eval_items_path), train, heldout, exemplar_rows, settings.leakage)
        inputs["eval_items"] = Path(eval_items_path)
    outputs = _write_data(out, train, heldout)
    counts = {"input_rows": len(records) + bad_rows.count, **split_counts(filtered, train, heldout)}
    manifest = build_manifest(
        STAGE,
        config=settings_to_dict(settings),
        seed=settings.seed,
        inputs=inputs,
        outputs=outputs,
        counts=counts,
        extra={"source": settings.source, "backend": backend if settings.source == "model" else None,
               "bad_rows": bad_rows.to_dict(), "leakage": leakage, "generation_journal": resumed},
    )
    write_manifest(out, manifest)
    if journal_path is not None:
        journal_path.unlink(missing_ok=True)  # the outputs and manifest now hold everything it had
    return manifest
