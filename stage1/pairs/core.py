"""The pairs stage's pure core: ``build_pairs`` turns SFT examples and negatives into train and
eval preference pairs (the steps are listed in ``stage1.pairs.stage``), with the counts of the
manifest: balance by kind and category, the length cue and the shortcut baselines per kind
(``shortcuts``), every drop by reason, and the kinds that fell below their floor.

Pure: records, strings and ``random.Random``; the token counter is passed in.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stage1.core.format import END_MARKER, INSTRUCTION_TAG, RESPONSE_TAG, render_completion, render_prompt
from stage1.core.lengths import length_by_kind
from stage1.core.records import NegativeRecord, PreferencePair, SFTExample
from stage1.core.splits import heldout_groups
from stage1.core.text_keys import dedup_key
from stage1.negatives.counts import FLOOR_MIN_PLANNED
from stage1.pairs.settings import PairSettings
from stage1.pairs.shortcuts import shortcut_baselines

DROP_REASONS = (
    "equal_to_chosen", "duplicate_triple", "too_long", "per_instruction_cap", "global_cap", "eval_text_in_rejected"
)


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


def _balance(pairs: Iterable[PreferencePair], keys: _Keys, seed: int) -> dict[str, Any]:
    pairs = list(pairs)
    return {
        "pairs": len(pairs),
        "by_kind": dict(sorted(Counter(p.negative_kind for p in pairs).items())),
        "by_source": dict(sorted(Counter(p.negative_source for p in pairs).items())),
        "by_category": dict(sorted(Counter(p.category for p in pairs).items())),
        "instructions": len({keys.group[p.instruction_id] for p in pairs}),
        "length_by_kind": length_by_kind((p.negative_kind, p.chosen, p.rejected) for p in pairs),
        "shortcuts_by_kind": shortcut_baselines(((p.negative_kind, keys.group[p.instruction_id], p.chosen, p.rejected) for p in pairs), seed),
    }


@dataclass
class _Keys:
    """``dedup_key`` texts worked out once while collecting, for the later steps."""

    group: dict[str, str] = field(default_factory=dict)  # instruction id -> its group (normalised instruction)
    chosen: dict[str, str] = field(default_factory=dict)  # instruction id -> normalised chosen completion
    rejected: dict[tuple[str, str], str] = field(default_factory=dict)  # (instruction id, rejected) -> normalised rejected
    negatives_by_kind: Counter[str] = field(default_factory=Counter)  # negatives in, per kind
    usable_by_kind: Counter[str] = field(default_factory=Counter)  # pairs made of them, before the caps
    dropped_by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


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
        chosen_key = keys.chosen[example.id]
        if negative.chosen is not None:  # a policy pair whose chosen is the best sample, not the reference
            chosen, chosen_key = negative.chosen, dedup_key(negative.chosen)
        built += 1
        keys.negatives_by_kind[negative.kind] += 1
        rejected = negative.completion
        rejected_key = dedup_key(rejected)
        reason = _drop_reason(prompt, chosen, rejected_key == chosen_key, rejected, seen, prompt_bytes, settings.max_length, pair_length)
        if reason is not None:
            dropped[reason] += 1
            keys.dropped_by_kind[negative.kind][reason] += 1
            continue
        keys.usable_by_kind[negative.kind] += 1
        pair = PreferencePair(prompt, chosen, rejected, example.id, example.category, negative.kind, "train", negative.negative_source)
        keys.rejected[(example.id, rejected)] = rejected_key
        groups.setdefault(keys.group[example.id], []).append(pair)
    return groups, built, keys


def _drop_reason(
    prompt: str, chosen: str, equal: bool, rejected: str, seen: set[tuple[str, str, str]], prompt_bytes: int, max_length: int,
    pair_length: Callable[[str, str], int],
) -> str | None:
    """Why a (chosen, rejected) pair cannot be used, or None (it is then marked as seen)."""
    if equal:  # the rule PreferencePair.from_dict enforces
        return "equal_to_chosen"
    if (prompt, chosen, rejected) in seen:
        return "duplicate_triple"
    seen.add((prompt, chosen, rejected))
    if any(prompt_bytes + nfc_bytes(completion) + 1 > max_length and pair_length(prompt, completion) > max_length
           for completion in (chosen, rejected)):
        return "too_long"
    return None


def kind_shortfalls(counts: dict[str, Any], floor: float) -> list[str]:
    """One message per negative kind (``FLOOR_MIN_PLANNED`` negatives or more) of which fewer than
    ``floor`` of the negatives made usable pairs
    (before the caps, which drop pairs for balance, not for a fault), naming why they were dropped."""
    messages = []
    for kind, negatives in counts["negatives_by_kind"].items():
        usable = counts["usable_by_kind"].get(kind, 0)
        if negatives >= FLOOR_MIN_PLANNED and usable < floor * negatives:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(counts["dropped_by_kind"].get(kind, {}).items(), key=lambda kv: -kv[1]))
            messages.append(f"{kind}: {usable} usable pairs of {negatives} negatives (floor {floor:.0%}); dropped: {reasons}")
    return messages


def build_pairs(
    examples: Sequence[SFTExample],
    negatives: Iterable[NegativeRecord],
    settings: PairSettings,
    pair_length: Callable[[str, str], int],
    policy_share: float | None = None,
) -> tuple[list[PreferencePair], list[PreferencePair], dict[str, Any]]:
    """``(train, eval, counts)``; see the module docstring for the order of the steps.

    Args:
        policy_share: ``negatives.source: mixed``: the share of each group's capped pairs taken
            from policy negatives, the rest from rule-made ones (``_source_share``); None keeps
            one round-robin over every pair's kind (one source).
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
        if policy_share is None:
            capped[key] = _kind_round_robin(groups[key], rng)[: settings.max_pairs_per_instruction]
        else:
            capped[key] = _source_share(groups[key], rng, settings.max_pairs_per_instruction, policy_share)
        dropped["per_instruction_cap"] += len(groups[key]) - len(capped[key])
    selected = _global_cap(capped, keys, settings.max_pairs)
    dropped["global_cap"] = sum(len(v) for v in capped.values()) - sum(len(v) for v in selected.values())

    held = heldout_groups(keys, settings.eval_fraction, settings.seed)
    train = [p for key in keys if key not in held for p in selected[key]]
    evaluation = [_with_split(p, "eval") for key in keys if key in held for p in selected[key]]
    borrowing = _borrows_eval_text(train, evaluation, {key for key in held if selected[key]}, normalised)
    dropped["eval_text_in_rejected"] = len(borrowing)
    train = [pair for index, pair in enumerate(train) if index not in borrowing]
    counts = {"negatives": built, "pairs": len(train) + len(evaluation), "dropped": dropped, "groups": len(keys),
              **_by_kind(normalised),
              "train": _balance(train, normalised, settings.seed), "eval": _balance(evaluation, normalised, settings.seed)}
    return train, evaluation, counts


def _by_kind(keys: _Keys) -> dict[str, Any]:
    return {"negatives_by_kind": dict(sorted(keys.negatives_by_kind.items())),
            "usable_by_kind": dict(sorted(keys.usable_by_kind.items())),
            "dropped_by_kind": {kind: dict(sorted(c.items())) for kind, c in sorted(keys.dropped_by_kind.items())}}


def _source_share(pairs: list[PreferencePair], rng: random.Random, cap: int, share: float) -> list[PreferencePair]:
    """Up to ``cap`` pairs: ``round(cap * share)`` policy pairs and the rest rule-made, each source in
    its own kind round-robin; a source with too few pairs leaves its places to the other."""
    policy = _kind_round_robin([p for p in pairs if p.negative_source == "policy"], rng)
    rules = _kind_round_robin([p for p in pairs if p.negative_source != "policy"], rng)
    wanted = min(len(policy), round(cap * share))
    taken_rules = min(len(rules), cap - wanted)
    taken_policy = min(len(policy), cap - taken_rules)
    return policy[:taken_policy] + rules[:taken_rules]


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
    is a donor's whole completion); for a runaway, each piece before and after the
    ``Instruction:`` and ``Response:`` lines it adds (the format refuses such lines in real text),
    whole or as consecutive words (a borrowed "In one word, what is the capital of Egypt?" holds the
    eval instruction "What is the capital of Egypt?");
    and any run of words inside double quotes (a refusal quoting its own instruction, which may
    hold an eval instruction: "In one word, what is ..." holds "What is ...").

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
            if any(_holds_eval_text(dedup_key(piece), eval_text) for piece in _TAG_SPLIT.split(text)):
                borrowing.add(index)
        elif '"' in pair.rejected and any(_holds_eval_text(dedup_key(quoted), eval_text) for quoted in _QUOTED.findall(pair.rejected)):
            borrowing.add(index)
    return borrowing


_QUOTED = re.compile(r'"([^"\n]+)"')


def _holds_eval_text(key: str, eval_text: set[str]) -> bool:
    """Whether a piece of a rejected (a runaway's borrowed instruction or answer, a refusal's quote
    of its own instruction) holds eval text as consecutive words: "In one word, what is the capital
    of Turkey?" holds "What is the capital of Turkey?"."""
    words = key.split()
    return any(" ".join(words[i:j]) in eval_text for i in range(len(words)) for j in range(i + 1, len(words) + 1))


def _with_split(pair: PreferencePair, split: str) -> PreferencePair:
    return PreferencePair(pair.prompt, pair.chosen, pair.rejected, pair.instruction_id, pair.category, pair.negative_kind, split,
                          pair.negative_source)


