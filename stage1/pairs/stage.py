"""The pairs stage: SFT examples + negatives in, DPO preference pairs (train / eval) out.

One pair per (chosen, negative): ``prompt = render_prompt(instruction)``, ``chosen =
render_completion(response)``, ``rejected`` = the negative's completion, byte for byte what SFT,
generation and evaluation use. Then, in this order:

1. a negative equal to the chosen completion after ``text_keys.dedup_key`` (" paris\nEND" for
   " Paris.\nEND") is dropped (``equal_to_chosen``), and identical (prompt, chosen, rejected)
   triples are kept once;
2. pairs longer than ``max_length`` tokens (prompt + completion + eos, on either side) are dropped
   and counted; the ids come from ``masking.encode_text`` with the stage's tokenizer;
3. an instruction group (``text_keys.dedup_key`` of the instruction, so "Q?" and "q" are one)
   is put in a seeded round-robin order over negative kinds that does not depend on the input
   order, and keeps the first ``max_pairs_per_instruction``, so an instruction that appears ten
   times does not bring ten times the pairs;
4. a global ``max_pairs`` cap takes one pair per group per round, over groups in seeded order, so
   it samples across instructions instead of keeping the first ones; from each group it takes the
   kind furthest below its share of the capped pool, so the cap keeps the kind balance;
5. groups are split into train and eval (``splits.heldout_groups``); no group is on both sides;
6. a train pair whose rejected text borrows eval text is dropped (``eval_text_in_rejected``):
   negatives are made before the split, so an off-topic donor answer or a runaway's borrowed
   ``Instruction:`` may be an eval pair's chosen answer or instruction (see ``_borrows_eval_text``);
7. the leakage gate checks the SFT data and every pair against the held-out evaluation items.

The manifest reports the balance by kind and category on each side, the length cue per kind (the
share of pairs whose rejected has more words than its chosen, and the median words of each side;
``stage1.core.lengths``), and every drop by reason.
The core (``build_pairs``) is pure; ``run_pairs`` is the shell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import GateError, InputError
from stage1.core.masking import encode_text, sequence_length
from stage1.core.records import BadRows, NegativeRecord, RecordError, SFTExample, check_unique_ids, plain_fields
from stage1.io.atomic import atomic_write_jsonl
from stage1.io.layout import PAIRS_EVAL_FILE as EVAL_FILE
from stage1.io.layout import PAIRS_TRAIN_FILE as TRAIN_FILE
from stage1.io.manifest import build_manifest, write_manifest
from stage1.io.records import leakage_gate, read_records
from stage1.pairs.core import DROP_REASONS, build_pairs, kind_shortfalls, nfc_bytes
from stage1.pairs.settings import PairSettings

__all__ = ["DROP_REASONS", "STAGE", "TokenLengths", "build_pairs", "nfc_bytes", "run_pairs"]
STAGE = "pairs"
log = logging.getLogger(__name__)


class TokenLengths:
    """Token counts through ``masking.encode_text``; prompt and chosen counts are cached."""

    def __init__(self, tokenizer):

        self._encode = lambda text: len(encode_text(tokenizer, text))
        self._cache: dict[str, int] = {}

    def _count(self, text: str, cache: bool) -> int:
        if text in self._cache:
            return self._cache[text]
        count = self._encode(text)
        if cache:
            self._cache[text] = count
        return count

    def __call__(self, prompt: str, completion: str) -> int:
        """Tokens of prompt + completion + eos. The prompt ends at a colon, which Qwen2's pre-tokenizer
        always splits off before a space or newline, so counting the two parts separately is exact
        then; otherwise the concatenation is counted."""
        if completion[:1] in (" ", "\n"):
            return sequence_length(self._count(prompt, True), self._count(completion, False))
        return sequence_length(0, self._count(prompt + completion, False))


class LazyTokenLengths:
    """``TokenLengths`` of the tokenizer in ``folder``, loaded on the first pair whose byte count
    could exceed ``max_length``: on pools of short pairs the tokenizer (and transformers, and torch
    under it) is never loaded, which is most of the stage's time on a small pool."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lengths: TokenLengths | None = None

    def __call__(self, prompt: str, completion: str) -> int:
        if self._lengths is None:
            from stage1.hf.models import load_tokenizer

            self._lengths = TokenLengths(load_tokenizer(self.folder))
        return self._lengths(prompt, completion)


def _check_floor(counts: dict[str, Any], settings: PairSettings) -> None:
    shortfalls = kind_shortfalls(counts, settings.kind_floor)
    if shortfalls and settings.on_kind_floor == "stop":
        raise GateError("pairs: a negative kind fell below its floor (pairs.kind_floor): " + "; ".join(shortfalls))
    for message in shortfalls:
        log.warning("pairs: %s", message)


def _negative_parser(known_ids: set[str]) -> Callable[[dict[str, Any]], NegativeRecord]:
    def parse(row: dict[str, Any]) -> NegativeRecord:
        negative = NegativeRecord.from_dict(row)
        if negative.instruction_id not in known_ids:
            raise RecordError("instruction_id", f"no SFT example has id {negative.instruction_id!r}",
                              hint="negatives and SFT data must come from the same run")
        return negative

    return parse


def _tokenizer_file(folder: Path) -> Path:
    """The file that defines the tokenizer, for the manifest's input hashes."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            return folder / name
    return folder


def _read_inputs(
    sft_source: Path, sources: dict[str, Path], on_bad_rows: str
) -> tuple[list[SFTExample], list[NegativeRecord], dict[str, BadRows]]:
    """The SFT examples (ids unique) and the negatives of every source (naming known examples)."""
    if not sources:
        raise InputError("no negatives to pair", field="negatives", hint="give rule-made negatives, policy negatives, or both")
    bad_rows = {"sft": BadRows(), **{name: BadRows() for name in sources}}
    examples = read_records(sft_source, SFTExample, on_bad_rows=on_bad_rows, bad_rows=bad_rows["sft"])
    check_unique_ids(examples, sft_source)
    if not examples:
        raise InputError("no usable SFT examples", path=sft_source)
    parse = _negative_parser({e.id for e in examples})
    negatives = [negative for name, path in sources.items()
                 for negative in read_records(path, parse, on_bad_rows=on_bad_rows, bad_rows=bad_rows[name])]
    return examples, negatives, bad_rows


def run_pairs(
    settings: PairSettings,
    *,
    sft_path: str | Path,
    negatives_path: str | Path,
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    eval_items_path: str | Path,
    on_bad_rows: str = "stop",
    policy_negatives_path: str | Path | None = None,
    policy_share: float | None = None,
    selection_criteria: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``train.jsonl`` and ``eval.jsonl`` (``PreferencePair`` rows); return the manifest.

    ``negatives_path`` and ``policy_negatives_path`` (the samples stage's negatives) may each be
    None, not both; with both, ``policy_share`` sets each group's mix (``build_pairs``).

    Raises:
        InputError: a bad row in either input (file, line, field), duplicate SFT ids, a negative
            naming an unknown example, no usable rows.
        GateError: an evaluation instruction in the SFT data or the pairs, missing evaluation items
            (the gate fails closed), or a kind under ``kind_floor`` (``on_kind_floor: stop``).
    """
    sources = {name: Path(path) for name, path in (("negatives", negatives_path), ("policy_negatives", policy_negatives_path))
               if path is not None}
    sft_source, out = Path(sft_path), Path(out_dir)
    examples, negatives, bad_rows = _read_inputs(sft_source, sources, on_bad_rows)
    share = policy_share if len(sources) == 2 else None
    train, evaluation, counts = build_pairs(examples, negatives, settings, LazyTokenLengths(Path(tokenizer_dir)), share)
    _check_floor(counts, settings)
    instructions = {e.id: e.instruction for e in examples}
    training = {"sft_train": [(e.id, e.instruction) for e in examples],
                "dpo_pairs": [(p.instruction_id, instructions[p.instruction_id]) for p in (*train, *evaluation)]}
    leakage = leakage_gate(eval_items_path, training, settings.leakage)
    outputs = {
        "train": atomic_write_jsonl(out / TRAIN_FILE, (plain_fields(p) for p in train)),
        "eval": atomic_write_jsonl(out / EVAL_FILE, (plain_fields(p) for p in evaluation)),
    }
    inputs = {"sft": sft_source, **sources, "eval_items": Path(eval_items_path), "tokenizer": _tokenizer_file(Path(tokenizer_dir))}
    manifest = build_manifest(
        STAGE, config=settings_to_dict(settings), seed=settings.seed, inputs=inputs, outputs=outputs,
        counts={"sft_rows": len(examples), **counts},
        extra={"bad_rows": {name: rows.to_dict() for name, rows in bad_rows.items()}, "leakage": leakage,
               "warnings": kind_shortfalls(counts, settings.kind_floor),
               "negative_sources": sorted(sources), "policy_share": share,
               "selection_criteria": None if selection_criteria is None else list(selection_criteria)},
    )
    write_manifest(out, manifest)
    return manifest
