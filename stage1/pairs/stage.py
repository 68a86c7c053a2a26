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

The manifest reports the balance by kind and category on each side, and every drop by reason.
The core (``build_pairs``) is pure; ``run_pairs`` is the shell.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import InputError
from stage1.core.format import END_MARKER, INSTRUCTION_TAG, RESPONSE_TAG, render_completion, render_prompt
from stage1.core.masking import encode_text, sequence_length
from stage1.core.records import BadRows, NegativeRecord, PreferencePair, RecordError, SFTExample, check_unique_ids
from stage1.core.splits import heldout_groups
from stage1.core.text_keys import dedup_key
from stage1.io.atomic import atomic_write_jsonl
from stage1.io.layout import PAIRS_EVAL_FILE as EVAL_FILE
from stage1.io.layout import PAIRS_TRAIN_FILE as TRAIN_FILE
from stage1.io.manifest import build_manifest, write_manifest
from stage1.io.records import leakage_gate, read_records
from stage1.negatives.stage import plain_fields
from stage1.pairs.settings import PairSettings

STAGE = "pairs"
DROP_REASONS = (
    "equal_to_chosen", "duplicate_triple", "too_long", "per_instruction_cap", "global_cap", "eval_text_in_rejected"
)


# ---------------------------------------------------------------- pure core


def nfc_bytes(text: str) -> int:
    """UTF-8 bytes of the text as the tokenizer sees it (NFC). A byte-level BPE token covers at least
    one byte, so this bounds the token count from above."""
    if text.isascii():
        return len(text)
    return len(unicodedata.normalize("NFC", text).encode("utf-8"))


def _pair_order(pair: PreferencePair) -> tuple[str, str, str, str]:
    return (pair.negative_kind, pair.rejected, pair.instruction_id, pair.chosen)


def _kind_round_robin(pairs: list[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    """All of a group's pairs, one kind at a time in a seeded kind order, so any prefix is balanced.

    The pairs are sorted before they are shuffled, so the order depends on the seed and the pairs,
    never on the order the negatives came in.
    """
    if len(pairs) < 2:
        return pairs
    by_kind: dict[str, list[PreferencePair]] = defaultdict(list)
    for pair in sorted(pairs, key=_pair_order):
        by_kind[pair.negative_kind].append(pair)
    queues = [by_kind[kind] for kind in sorted(by_kind)]
    for queue in queues:
        if len(queue) > 1:
            rng.shuffle(queue)
    rng.shuffle(queues)
    ordered: list[PreferencePair] = []
    for depth in range(max(len(queue) for queue in queues)):
        ordered += [queue[depth] for queue in queues if depth < len(queue)]
    return ordered


def _balance(pairs: Iterable[PreferencePair], keys: _Keys) -> dict[str, Any]:
    pairs = list(pairs)
    return {
        "pairs": len(pairs),
        "by_kind": dict(sorted(Counter(p.negative_kind for p in pairs).items())),
        "by_category": dict(sorted(Counter(p.category for p in pairs).items())),
        "instructions": len({keys.group[p.instruction_id] for p in pairs}),
    }


@dataclass
class _Keys:
    """``dedup_key`` texts worked out once while collecting, for the later steps."""

    group: dict[str, str] = field(default_factory=dict)  # instruction id -> its group (normalised instruction)
    chosen: dict[str, str] = field(default_factory=dict)  # instruction id -> normalised chosen completion
    rejected: dict[tuple[str, str], str] = field(default_factory=dict)  # (instruction id, rejected) -> normalised rejected


def _collect(
    examples: Sequence[SFTExample],
    negatives: Iterable[NegativeRecord],
    settings: PairSettings,
    pair_length: Callable[[str, str], int],
    dropped: dict[str, int],
) -> tuple[dict[str, list[PreferencePair]], int, _Keys]:
    """Pairs by instruction group, after de-duplication and the length limit; how many negatives came
    in; and the normalised texts."""
    by_id = {example.id: example for example in examples}
    rendered: dict[str, tuple[str, str, int]] = {}
    keys = _Keys()
    groups: dict[str, list[PreferencePair]] = {}
    seen: set[tuple[str, str, str]] = set()
    built = 0
    for negative in negatives:
        example = by_id[negative.instruction_id]
        if example.id not in rendered:
            prompt, chosen = render_prompt(example.instruction), render_completion(example.response)
            rendered[example.id] = (prompt, chosen, nfc_bytes(prompt))
            keys.group[example.id], keys.chosen[example.id] = dedup_key(example.instruction), dedup_key(chosen)
        prompt, chosen, prompt_bytes = rendered[example.id]
        built += 1
        rejected = negative.completion
        rejected_key = dedup_key(rejected)
        if rejected_key == keys.chosen[example.id]:  # the rule PreferencePair.from_dict enforces
            dropped["equal_to_chosen"] += 1
            continue
        if (prompt, chosen, rejected) in seen:
            dropped["duplicate_triple"] += 1
            continue
        seen.add((prompt, chosen, rejected))
        if any(
            prompt_bytes + nfc_bytes(completion) + 1 > settings.max_length and pair_length(prompt, completion) > settings.max_length
            for completion in (chosen, rejected)
        ):
            dropped["too_long"] += 1
            continue
        pair = PreferencePair(prompt, chosen, rejected, example.id, example.category, negative.kind, "train")
        keys.rejected[(example.id, rejected)] = rejected_key
        groups.setdefault(keys.group[example.id], []).append(pair)
    return groups, built, keys


def build_pairs(
    examples: Sequence[SFTExample],
    negatives: Iterable[NegativeRecord],
    settings: PairSettings,
    pair_length: Callable[[str, str], int],
) -> tuple[list[PreferencePair], list[PreferencePair], dict[str, Any]]:
    """``(train, eval, counts)``; see the module docstring for the order of the steps.

    Args:
        pair_length: tokens of ``prompt + completion`` plus eos. Called only when the texts' byte
            count could exceed ``max_length``; shorter texts cannot (one token >= one byte).

    Raises:
        KeyError: a negative names an instruction id that no example has (the shell checks first).
    """
    dropped = dict.fromkeys(DROP_REASONS, 0)
    groups, built, normalised = _collect(examples, negatives, settings, pair_length, dropped)
    rng = random.Random(f"{settings.seed}:pairs")
    keys = sorted(groups)
    rng.shuffle(keys)  # seeded group order for the global cap and the output
    capped: dict[str, list[PreferencePair]] = {}
    for key in keys:
        capped[key] = _kind_round_robin(groups[key], rng)[: settings.max_pairs_per_instruction]
        dropped["per_instruction_cap"] += len(groups[key]) - len(capped[key])
    selected = _global_cap(capped, keys, settings.max_pairs)
    dropped["global_cap"] = sum(len(v) for v in capped.values()) - sum(len(v) for v in selected.values())

    held = heldout_groups(keys, settings.eval_fraction, settings.seed)
    train = [p for key in keys if key not in held for p in selected[key]]
    evaluation = [_with_split(p, "eval") for key in keys if key in held for p in selected[key]]
    borrowing = _borrows_eval_text(train, evaluation, {key for key in held if selected[key]}, normalised)
    dropped["eval_text_in_rejected"] = len(borrowing)
    train = [pair for index, pair in enumerate(train) if index not in borrowing]
    counts = {
        "negatives": built,
        "pairs": len(train) + len(evaluation),
        "dropped": dropped,
        "groups": len(keys),
        "train": _balance(train, normalised),
        "eval": _balance(evaluation, normalised),
    }
    return train, evaluation, counts


def _global_cap(capped: dict[str, list[PreferencePair]], keys: list[str], limit: int | None) -> dict[str, list[PreferencePair]]:
    """One pair per group per round, groups in the given order, until ``limit`` pairs are taken.

    From each group the pair taken is the one whose kind has the smallest share of its pool count
    taken so far (the group's own seeded order breaks ties), so the kept pairs have the kind mix
    of the capped pool: taking each group's first pair would keep whichever kind comes first.
    """
    if limit is None or sum(len(v) for v in capped.values()) <= limit:
        return capped
    pool = Counter(pair.negative_kind for key in keys for pair in capped[key])
    taken_by_kind: Counter[str] = Counter()
    remaining = {key: list(capped[key]) for key in keys}
    selected: dict[str, list[PreferencePair]] = {key: [] for key in keys}
    active, taken = [key for key in keys if remaining[key]], 0
    while taken < limit:  # the pool holds more than ``limit`` pairs, so every round takes some
        for key in active:
            if taken == limit:
                break
            queue = remaining[key]
            index = min(range(len(queue)), key=lambda i: (taken_by_kind[queue[i].negative_kind] / pool[queue[i].negative_kind], i))
            pair = queue.pop(index)
            selected[key].append(pair)
            taken_by_kind[pair.negative_kind] += 1
            taken += 1
        active = [key for key in active if remaining[key]]
    return selected


_RUNAWAY_TAGS = ("\n" + INSTRUCTION_TAG, "\n" + RESPONSE_TAG)
_TAG_SPLIT = re.compile("|".join(re.escape(tag) for tag in _RUNAWAY_TAGS))


def _borrows_eval_text(
    train: list[PreferencePair], evaluation: list[PreferencePair], eval_groups: set[str], keys: _Keys
) -> set[int]:
    """Positions of the train pairs whose rejected text carries an eval pair's instruction or answer.

    Eval text is every eval group's normalised instruction and every eval chosen answer that no
    train pair has as its chosen answer ("Yes." chosen on both sides is no held-out information;
    it also means a pair's own answer is never eval text). Compared on ``dedup_key`` text, the key
    of the splits and of the leakage gate's exact match: the whole rejected (an off-topic negative
    is a donor's whole completion) and, for a runaway, each piece before and after the
    ``Instruction:`` and ``Response:`` lines it adds (the format refuses such lines in real text).

    The other direction is not checked, on purpose: an eval pair whose rejected borrows train text
    leaks nothing into training, and it still asks whether the model prefers the answer to its own
    held-out prompt over text that fits another prompt.
    """
    train_chosen = {keys.chosen[pair.instruction_id] for pair in train}
    eval_only = {pair.instruction_id: pair.chosen for pair in evaluation if keys.chosen[pair.instruction_id] not in train_chosen}
    eval_completions = {keys.chosen[instruction_id] for instruction_id in eval_only}
    eval_text = eval_groups | {dedup_key(chosen.removesuffix("\n" + END_MARKER)) for chosen in eval_only.values()}
    eval_text.discard("")
    borrowing: set[int] = set()
    for index, pair in enumerate(train):
        whole = keys.rejected[(pair.instruction_id, pair.rejected)]
        if whole in eval_completions or whole in eval_text:
            borrowing.add(index)
        elif _TAG_SPLIT.search(pair.rejected):
            text = pair.rejected.removesuffix("\n" + END_MARKER)
            if any(dedup_key(piece) in eval_text for piece in _TAG_SPLIT.split(text)):
                borrowing.add(index)
    return borrowing


def _with_split(pair: PreferencePair, split: str) -> PreferencePair:
    return PreferencePair(pair.prompt, pair.chosen, pair.rejected, pair.instruction_id, pair.category, pair.negative_kind, split)


# ---------------------------------------------------------------- shell


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


def run_pairs(
    settings: PairSettings,
    *,
    sft_path: str | Path,
    negatives_path: str | Path,
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    eval_items_path: str | Path,
    on_bad_rows: str = "stop",
) -> dict[str, Any]:
    """Write ``train.jsonl`` and ``eval.jsonl`` (``PreferencePair`` rows); return the manifest.

    Raises:
        InputError: a bad row in either input (file, line, field), duplicate SFT ids, a negative
            naming an unknown example, no usable rows.
        GateError: an evaluation instruction appears in the SFT data or the pairs, or the
            evaluation items are missing (the gate fails closed).
    """
    from stage1.hf.models import load_tokenizer

    sft_source, negatives_source, out = Path(sft_path), Path(negatives_path), Path(out_dir)
    bad_rows = {"sft": BadRows(), "negatives": BadRows()}
    examples = read_records(sft_source, SFTExample, on_bad_rows=on_bad_rows, bad_rows=bad_rows["sft"])
    check_unique_ids(examples, sft_source)
    if not examples:
        raise InputError("no usable SFT examples", path=sft_source)
    negatives = read_records(
        negatives_source, _negative_parser({e.id for e in examples}), on_bad_rows=on_bad_rows, bad_rows=bad_rows["negatives"]
    )
    train, evaluation, counts = build_pairs(examples, negatives, settings, TokenLengths(load_tokenizer(tokenizer_dir)))
    instructions = {e.id: e.instruction for e in examples}
    leakage = leakage_gate(
        eval_items_path,
        {
            "sft_train": [(e.id, e.instruction) for e in examples],
            "dpo_pairs": [(p.instruction_id, instructions[p.instruction_id]) for p in (*train, *evaluation)],
        },
        settings.leakage,
    )
    outputs = {
        "train": atomic_write_jsonl(out / TRAIN_FILE, (plain_fields(p) for p in train)),
        "eval": atomic_write_jsonl(out / EVAL_FILE, (plain_fields(p) for p in evaluation)),
    }
    manifest = build_manifest(
        STAGE,
        config=settings_to_dict(settings),
        seed=settings.seed,
        inputs={"sft": sft_source, "negatives": negatives_source, "eval_items": Path(eval_items_path),
                "tokenizer": _tokenizer_file(Path(tokenizer_dir))},
        outputs=outputs,
        counts={"sft_rows": len(examples), **counts},
        extra={"bad_rows": {name: rows.to_dict() for name, rows in bad_rows.items()}, "leakage": leakage},
    )
    write_manifest(out, manifest)
    return manifest
