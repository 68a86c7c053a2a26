"""Pairs: the exact format on each side, no duplicate triples, caps that sample across instructions,
splits grouped by instruction, lengths measured in real tokens, and a leakage gate that fails closed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.errors import ConfigError, GateError, InputError
from stage1.core.format import render_completion, render_prompt
from stage1.core.masking import encode_text
from stage1.core.records import NegativeRecord, PreferencePair, SFTExample
from stage1.core.splits import heldout_groups
from stage1.core.text_keys import contains_words, dedup_key
from stage1.negatives import DonorPool, NegativeSettings, generate_negatives
from stage1.pairs.settings import PairSettings
from stage1.pairs.stage import TokenLengths, build_pairs, run_pairs
from tests.strategies import format_text, sft_examples


def _no_tokenizer(prompt: str, completion: str) -> int:
    raise AssertionError("short texts must not need the tokenizer")


def _negatives_for(examples, per_example=3, seed=0):
    settings = NegativeSettings(per_example=per_example, seed=seed)
    stream, _ = generate_negatives(examples, settings, DonorPool.from_examples(examples, 64, seed))
    return list(stream)


@given(sft_examples(min_size=1, max_size=30), st.integers(0, 3), st.sampled_from([0.0, 0.3]))
def test_pairs_are_exact_unique_and_split_by_instruction(examples, seed, fraction):
    """Every pair is render_prompt / render_completion / the negative's completion; no triple twice;
    no normalised instruction in both splits; the same inputs give the same pairs."""
    negatives = _negatives_for(examples, seed=seed)
    negatives = negatives + negatives[:3]  # repeated negatives must not repeat pairs
    settings = PairSettings(eval_fraction=fraction, seed=seed, max_length=100_000)
    train, evaluation, counts = build_pairs(examples, negatives, settings, _no_tokenizer)
    by_id = {e.id: e for e in examples}
    completions = {(n.instruction_id, n.completion) for n in negatives}
    for pair in (*train, *evaluation):
        example = by_id[pair.instruction_id]
        assert pair.prompt == render_prompt(example.instruction)
        assert pair.chosen == render_completion(example.response)
        assert (pair.instruction_id, pair.rejected) in completions and dedup_key(pair.rejected) != dedup_key(pair.chosen)
        assert PreferencePair.from_dict(pair.to_dict()) == pair, "every pair written can be read back"
    triples = Counter((p.prompt, p.chosen, p.rejected) for p in (*train, *evaluation))
    assert not triples or max(triples.values()) == 1
    assert not {dedup_key(p.prompt) for p in train} & {dedup_key(p.prompt) for p in evaluation}
    assert all(p.split == "train" for p in train) and all(p.split == "eval" for p in evaluation)
    assert counts["negatives"] == len(negatives)
    assert counts["pairs"] + sum(counts["dropped"].values()) == len(negatives)
    assert build_pairs(examples, negatives, settings, _no_tokenizer) == (train, evaluation, counts)


@pytest.mark.parametrize("rejected", [" paris\nEND", " PARIS!\nEND", " Paris.\nEND", " Paris .\nEND"])
def test_a_negative_equal_to_chosen_after_normalisation_makes_no_pair(rejected):
    example = SFTExample(id="a", instruction="What is the capital of France?", response="Paris.")
    negatives = [NegativeRecord("a", "factually_incorrect", rejected, "rule"), NegativeRecord("a", "format_violation", " Paris.", "rule")]
    train, _, counts = build_pairs([example], negatives, PairSettings(eval_fraction=0.0), _no_tokenizer)
    assert [p.rejected for p in train] == [" Paris."], "a missing END is a real difference and stays"
    assert counts["dropped"]["equal_to_chosen"] == 1


def _many(instructions: int, copies: int, negatives_each: int):
    examples, negatives = [], []
    for i in range(instructions):
        for c in range(copies):
            eid = f"q{i}c{c}"
            text = f"Question number {i}?" if c % 2 == 0 else f"question NUMBER {i}"
            examples.append(SFTExample(id=eid, instruction=text, response=f"Answer {i}.{c}", category="c"))
            kinds = ("unwarranted_refusal", "off_topic", "verbose_vague", "format_violation", "factually_incorrect")
            negatives += [NegativeRecord(eid, kinds[k % 5], f" Bad {i} {c} {k}.\nEND", "rule") for k in range(negatives_each)]
    return examples, negatives


def test_duplicate_instructions_do_not_multiply_pairs():
    examples, negatives = _many(instructions=3, copies=10, negatives_each=3)
    train, evaluation, counts = build_pairs(examples, negatives, PairSettings(max_pairs_per_instruction=4, eval_fraction=0.0), _no_tokenizer)
    per_group = Counter(dedup_key(p.prompt) for p in train)
    assert sorted(per_group.values()) == [4, 4, 4]
    assert counts["dropped"]["per_instruction_cap"] == 3 * 30 - 12
    kinds = Counter(p.negative_kind for p in train if dedup_key(p.prompt) == "instruction question number 0 response")
    assert len(kinds) == 3, "the per-instruction cap keeps kinds balanced"


def test_the_global_cap_samples_across_instructions():
    examples, negatives = _many(instructions=50, copies=1, negatives_each=5)
    train, _, counts = build_pairs(examples, negatives, PairSettings(max_pairs=50, eval_fraction=0.0), _no_tokenizer)
    assert len(train) == 50 and counts["dropped"]["global_cap"] == 200
    assert len({p.instruction_id for p in train}) == 50, "one pair from each instruction, not all from the first ten"
    train, _, _ = build_pairs(examples, negatives, PairSettings(max_pairs=75, eval_fraction=0.0), _no_tokenizer)
    assert sorted(Counter(p.instruction_id for p in train).values()) == [1] * 25 + [2] * 25


KINDS = ("unwarranted_refusal", "off_topic", "verbose_vague", "format_violation", "factually_incorrect")


def _every_kind(instructions: int):
    examples = [SFTExample(id=f"q{i}", instruction=f"Question number {i}?", response=f"Answer {i}.", category="c") for i in range(instructions)]
    negatives = [NegativeRecord(f"q{i}", kind, f" Bad {i} {kind}.\nEND", "rule") for i in range(instructions) for kind in KINDS]
    return examples, negatives


@pytest.mark.parametrize("limit", [50, 123, 300])
def test_the_global_cap_keeps_the_kind_balance(limit):
    """Five kinds per instruction in the same input order: the cap keeps a fifth of each, not the first kind."""
    examples, negatives = _every_kind(100)
    train, _, _ = build_pairs(examples, negatives, PairSettings(max_pairs=limit, eval_fraction=0.0), _no_tokenizer)
    kinds = Counter(p.negative_kind for p in train)
    assert len(train) == limit and all(abs(kinds[kind] - limit / 5) <= max(1, 0.02 * limit) for kind in KINDS), kinds
    assert max(Counter(p.instruction_id for p in train).values()) - min(Counter(p.instruction_id for p in train).values()) <= 1


@given(st.randoms(use_true_random=False), st.sampled_from([None, 40, 130]), st.integers(1, 5))
def test_pairs_do_not_depend_on_the_order_of_the_negatives(order, limit, per_instruction):
    """Shuffling the negatives gives the same pairs in the same order: only the seed decides."""
    examples, negatives = _every_kind(40)
    settings = PairSettings(max_pairs=limit, max_pairs_per_instruction=per_instruction, eval_fraction=0.2)
    shuffled = list(negatives)
    order.shuffle(shuffled)
    assert build_pairs(examples, shuffled, settings, _no_tokenizer) == build_pairs(examples, negatives, settings, _no_tokenizer)


def test_balance_by_kind_is_reported_per_split():
    examples, negatives = _many(instructions=40, copies=1, negatives_each=5)
    train, evaluation, counts = build_pairs(examples, negatives, PairSettings(eval_fraction=0.25), _no_tokenizer)
    assert counts["train"]["by_kind"] == dict(sorted(Counter(p.negative_kind for p in train).items()))
    assert counts["eval"]["pairs"] == len(evaluation) == 50 and counts["eval"]["instructions"] == 10
    assert set(counts["train"]["by_kind"]) == {"unwarranted_refusal", "off_topic", "verbose_vague", "format_violation", "factually_incorrect"}


def _questions_by_side(count=4):
    """``count`` instructions, split half and half by ``PairSettings(eval_fraction=0.5)``: (train, eval)."""
    questions = [f"What is the capital of {country}?" for country in ("Peru", "Chad", "Laos", "Fiji")[:count]]
    held = heldout_groups([dedup_key(q) for q in questions], 0.5, 0)
    return [q for q in questions if dedup_key(q) not in held], [q for q in questions if dedup_key(q) in held]


def test_train_rejecteds_that_borrow_eval_text_are_dropped():
    (train_q, _), (eval_q, _) = _questions_by_side()
    examples = [
        SFTExample(id="t", instruction=train_q, response="Answer one.", category="a"),
        SFTExample(id="e", instruction=eval_q, response="Answer two.", category="b"),
    ]
    negatives = [
        NegativeRecord("t", "off_topic", " answer TWO\nEND", "from:b", "e"),  # the eval answer, normalised
        NegativeRecord("t", "format_violation", f" Answer one.\nInstruction: {eval_q.upper()}", "runaway", "e"),
        NegativeRecord("t", "format_violation", " Answer one.\nInstruction: Say hi.\nResponse: Answer two.", "runaway"),
        NegativeRecord("t", "format_violation", " Answer one.", "missing_end"),  # its own answer: kept
        NegativeRecord("e", "off_topic", " Answer one.\nEND", "from:a", "t"),  # eval borrowing train: kept
        NegativeRecord("e", "format_violation", f" Answer two.\nInstruction: {train_q}", "runaway", "t"),
    ]
    train, evaluation, counts = build_pairs(examples, negatives, PairSettings(eval_fraction=0.5), _no_tokenizer)
    assert [p.rejected for p in train] == [" Answer one."]
    assert len(evaluation) == 2 and counts["dropped"]["eval_text_in_rejected"] == 3
    assert counts["pairs"] + sum(counts["dropped"].values()) == len(negatives)


def test_an_answer_chosen_on_both_sides_is_not_eval_text():
    """"No." chosen in train and in eval carries no held-out information; "Maybe." chosen only in eval does."""
    (train_q, other_q), (eval_q, eval_q2) = _questions_by_side()
    examples = [
        SFTExample(id="t", instruction=train_q, response="Yes.", category="a"),
        SFTExample(id="t2", instruction=other_q, response="No.", category="a"),
        SFTExample(id="e", instruction=eval_q, response="No.", category="b"),
        SFTExample(id="e2", instruction=eval_q2, response="Maybe.", category="b"),
    ]
    negatives = [
        NegativeRecord("t", "factually_incorrect", " No.\nEND", "yes_no"),
        NegativeRecord("t", "off_topic", " Maybe.\nEND", "from:b", "e2"),
        NegativeRecord("t2", "factually_incorrect", " Yes.\nEND", "yes_no"),
        NegativeRecord("e", "factually_incorrect", " Yes.\nEND", "yes_no"),
        NegativeRecord("e2", "verbose_vague", " Who knows.\nEND", "template"),
    ]
    train, _, counts = build_pairs(examples, negatives, PairSettings(eval_fraction=0.5), _no_tokenizer)
    assert sorted(p.rejected for p in train) == [" No.\nEND", " Yes.\nEND"]
    assert counts["dropped"]["eval_text_in_rejected"] == 1


def test_no_train_rejected_carries_eval_text_on_the_fixture_pool():
    """With the fixture pool and default settings, negatives drawn before the split put eval answers
    and eval instructions into train rejecteds (29 and 5 before this check); none are left."""
    rows = [json.loads(line) for line in (Path(__file__).parents[3] / "stage1/pools/sft/instructions.jsonl").read_text().splitlines()]
    examples = [SFTExample(**row) for row in rows]
    settings = NegativeSettings()
    stream, _ = generate_negatives(examples, settings, DonorPool.from_examples(examples, settings.donor_pool_size, settings.seed))
    train, evaluation, counts = build_pairs(examples, list(stream), PairSettings(), _no_tokenizer)
    instructions = {e.id: e.instruction for e in examples}
    eval_instructions = {instructions[p.instruction_id] for p in evaluation}
    eval_only_answers = {dedup_key(p.chosen) for p in evaluation} - {dedup_key(p.chosen) for p in train}
    assert evaluation and counts["dropped"]["eval_text_in_rejected"] > 0
    for pair in train:
        assert dedup_key(pair.rejected) not in eval_only_answers, pair
        assert not any(contains_words(pair.rejected, instruction) for instruction in eval_instructions), pair


def test_overlong_pairs_are_dropped_by_real_token_count(qwen_tokenizer):
    lengths = TokenLengths(qwen_tokenizer)
    example = SFTExample(id="a", instruction="What is the capital of France?", response="Paris.")
    prompt = render_prompt(example.instruction)
    short = NegativeRecord("a", "off_topic", " Blue.\nEND", "rule")
    long = NegativeRecord("a", "verbose_vague", " " + "word " * 40 + "end.\nEND", "rule")
    needed = lengths(prompt, render_completion(example.response))
    assert needed == len(encode_text(qwen_tokenizer, prompt + " Paris.\nEND")) + 1
    limit = lengths(prompt, short.completion)
    train, _, counts = build_pairs([example], [short, long], PairSettings(max_length=limit, eval_fraction=0.0), lengths)
    assert [p.rejected for p in train] == [short.completion]
    assert counts["dropped"]["too_long"] == 1
    _, _, counts = build_pairs([example], [short], PairSettings(max_length=limit - 1, eval_fraction=0.0), lengths)
    assert counts["dropped"]["too_long"] == 1, "the limit is inclusive of the eos and exact"


@given(format_text, format_text)
def test_token_lengths_of_the_parts_equal_the_whole(qwen_tokenizer, instruction, response):
    """prompt ids + completion ids = ids of the whole text, so counting the parts is exact."""
    lengths = TokenLengths(qwen_tokenizer)
    prompt, completion = render_prompt(instruction), render_completion(response)
    assert lengths(prompt, completion) == len(encode_text(qwen_tokenizer, prompt + completion)) + 1
    odd = "x" + completion  # a completion glued to the colon is counted as one text
    assert lengths(prompt, odd) == len(encode_text(qwen_tokenizer, prompt + odd)) + 1


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="pairs.eval_fraction"):
        PairSettings(eval_fraction=1.0)
    with pytest.raises(ConfigError, match="pairs.max_pairs"):
        PairSettings(max_pairs=0)


# ---------------------------------------------------------------- the stage


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def stage_inputs(tmp_path):
    examples = [
        {"id": f"s{i}", "instruction": f"What is {i} times 4?", "response": f"{i} times 4 is {4 * i}.", "category": "arithmetic"}
        for i in range(20)
    ]
    negatives = [
        {"instruction_id": f"s{i}", "kind": kind, "completion": f" Wrong answer {i} for {kind}.\nEND", "method": "rule"}
        for i in range(20)
        for kind in ("off_topic", "unwarranted_refusal")
    ]
    items = [{"id": "e1", "instruction": "Name a fruit that is yellow."}]
    return _write(tmp_path / "sft.jsonl", examples), _write(tmp_path / "neg.jsonl", negatives), _write(tmp_path / "items.jsonl", items)


@pytest.mark.slow
def test_stage_writes_pairs_and_a_manifest(tiny_model_dir, stage_inputs, tmp_path):
    sft, negatives, items = stage_inputs
    kwargs = dict(sft_path=sft, negatives_path=negatives, tokenizer_dir=tiny_model_dir, eval_items_path=items)
    manifest = run_pairs(PairSettings(eval_fraction=0.2), out_dir=tmp_path / "out", **kwargs)
    train = [PreferencePair.from_dict(json.loads(x)) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    evaluation = [PreferencePair.from_dict(json.loads(x)) for x in (tmp_path / "out" / "eval.jsonl").read_text().splitlines()]
    assert (len(train), len(evaluation)) == (32, 8)
    assert manifest["counts"]["train"]["by_kind"] == {"off_topic": 16, "unwarranted_refusal": 16}
    assert manifest["leakage"]["leaks"] == 0 and set(manifest["input_hashes"]) == {"sft", "negatives", "eval_items", "tokenizer"}
    again = run_pairs(PairSettings(eval_fraction=0.2), out_dir=tmp_path / "again", **kwargs)
    assert again["output_hashes"] == manifest["output_hashes"]


@pytest.mark.slow
def test_stage_gate_fails_closed(tiny_model_dir, stage_inputs, tmp_path):
    sft, negatives, _ = stage_inputs
    kwargs = dict(sft_path=sft, negatives_path=negatives, tokenizer_dir=tiny_model_dir)
    leaky = _write(tmp_path / "leaky.jsonl", [{"id": "e9", "instruction": "what is 7 times 4"}])
    with pytest.raises(GateError, match="'e9'"):
        run_pairs(PairSettings(), out_dir=tmp_path / "a", eval_items_path=leaky, **kwargs)
    with pytest.raises(GateError, match="not found"):
        run_pairs(PairSettings(), out_dir=tmp_path / "a", eval_items_path=tmp_path / "nope.jsonl", **kwargs)
    assert not (tmp_path / "a").exists(), "nothing is written when the gate fails"


def test_stage_refuses_negatives_for_unknown_examples(tiny_model_dir, stage_inputs, tmp_path):
    sft, negatives, items = stage_inputs
    with open(negatives, "a") as handle:
        handle.write(json.dumps({"instruction_id": "ghost", "kind": "off_topic", "completion": " x\nEND", "method": "r"}) + "\n")
    kwargs = dict(sft_path=sft, negatives_path=negatives, tokenizer_dir=tiny_model_dir, eval_items_path=items)
    with pytest.raises(InputError) as caught:
        run_pairs(PairSettings(), out_dir=tmp_path / "a", **kwargs)
    assert (caught.value.line, caught.value.field) == (41, "instruction_id") and "'ghost'" in str(caught.value)
    manifest = run_pairs(PairSettings(), out_dir=tmp_path / "a", on_bad_rows="skip", **kwargs)
    assert manifest["bad_rows"]["negatives"]["count"] == 1 and manifest["counts"]["pairs"] == 40
    lines = negatives.read_text().splitlines()[:-1]
    lines.append(json.dumps({"instruction_id": "s1", "kind": "sarcasm", "completion": " x\nEND", "method": "r"}))
    negatives.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="field 'kind': unknown value 'sarcasm'"):
        run_pairs(PairSettings(), out_dir=tmp_path / "b", **kwargs)
