"""Negatives a reader cannot tell apart without reading them, the floor per kind, streaming, and
factual negatives only where the item has a checkable reference."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from stage1.core.criteria import is_refusal
from stage1.core.criteria_content import commits_to_answer
from stage1.core.errors import GateError, InputError
from stage1.core.format import render_completion
from stage1.core.records import NegativeRecord, SFTExample
from stage1.core.text_keys import dedup_key
from stage1.negatives import DonorPool, NegativeSettings, generate_negatives, run_negatives, templates
from stage1.negatives.candidate import Built
from stage1.negatives.core import NegativeMaker
from stage1.negatives.donors import accept_share, balanced_shares
from stage1.negatives.factual import has_checkable_reference
from stage1.negatives.phrasing import CARRIER_WORDS, fragment_of, subject_led, subject_of, target_words
from stage1.pairs.core import build_pairs, kind_shortfalls
from stage1.pairs.settings import PairSettings
from stage1.pairs.shortcuts import (
    MAX_MARKER_SHARE,
    MIN_DISTINCT_OPENINGS,
    NEAR_CHANCE,
    classifier_accuracy,
    features,
    opening,
    shortcut_baselines,
)

ROOT = Path(__file__).parents[3]
POOL = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"
LARGE_POOL = ROOT / "stage1" / "pools" / "sft" / "instructions_large.jsonl"
#: The opening classifier's bound for refusals and vague answers on the shipped pools (measured:
#: 0.575 and 0.565 on the default pool, 0.614 and 0.609 on the larger one, whose one-word "Give only
#: the number" answers no refusal can match in length).
CLASSIFIER_BOUND = {"instructions": 0.60, "instructions_large": NEAR_CHANCE}


def _pool(path: Path = POOL) -> list[SFTExample]:
    return [SFTExample.from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _negatives(examples, settings=None):
    settings = settings or NegativeSettings()
    stream, counts = generate_negatives(examples, settings, DonorPool.from_examples(examples, settings.donor_pool_size, settings.seed))
    return list(stream), counts


def _pairs_of(path: Path, settings: NegativeSettings | None = None):
    examples = _pool(path)
    negatives, _ = _negatives(examples, settings)
    train, evaluation, counts = build_pairs(examples, negatives, PairSettings(), lambda prompt, completion: 0)
    return train, counts


@pytest.fixture(scope="module")
def default_pairs():
    return _pairs_of(POOL)


@pytest.fixture(scope="module", params=[POOL, LARGE_POOL], ids=lambda path: path.stem)
def pool_pairs(request):
    return request.param.stem, _pairs_of(request.param), {e.id: e for e in _pool(request.param)}


# ---------------------------------------------------------------- the shortcut baselines themselves


def _planted(n: int, marker: bool, longer: bool) -> list[tuple[str, str, str, str]]:
    pairs = []
    for i in range(n):
        chosen = render_completion(f"The value of item {i} is {i + 3}.")
        body = f"value of item {i} is {i + 4}."
        rejected = f"Sorry, the {body}" if marker else f"The {body}"
        rejected = rejected + " Indeed it is so." if longer else rejected
        pairs.append(("k", f"g{i}", chosen, render_completion(rejected)))
    return pairs


def test_a_planted_opening_is_found_by_the_classifier_and_not_by_the_length_rule():
    report = shortcut_baselines(_planted(200, marker=True, longer=False))["k"]
    assert report["classifier"] > 0.95 and report["length_rule"] > 0.95  # "Sorry," adds a word as well
    assert report["top_marker"] == {"opening": "sorry the value", "share": 1.0} and not report["near_chance"]


def test_rejecteds_that_differ_only_in_content_sit_at_chance():
    report = shortcut_baselines(_planted(200, marker=False, longer=False))["k"]
    assert report["classifier"] == pytest.approx(0.5) and report["length_rule"] == pytest.approx(0.5)
    assert report["top_marker"] is None and report["near_chance"]


def test_a_planted_length_is_found_by_both():
    report = shortcut_baselines(_planted(200, marker=False, longer=True))["k"]
    assert report["length_rule"] == 1.0 and report["classifier"] > 0.95


def test_the_classifier_is_cross_validated_by_group_and_seeded():
    """Each pair's own group is held out when it is scored: a marker seen once per group cannot be
    learned, so the accuracy stays at chance; and the folds depend on the seed only."""
    pairs = [(f"g{i}", render_completion(f"Reply{i} is {i}."), render_completion(f"Marker{i} is {i}.")) for i in range(60)]
    assert classifier_accuracy(pairs, seed=0) == pytest.approx(0.5)
    mixed = _planted(50, marker=True, longer=False) + _planted(50, marker=False, longer=False)
    triples = [(g + str(i), c, r) for i, (_, g, c, r) in enumerate(mixed)]
    assert classifier_accuracy(triples, seed=3) == classifier_accuracy(list(triples), seed=3)
    assert classifier_accuracy(triples[:1]) is None


def test_features_and_openings_ignore_case_punctuation_and_the_end_line():
    assert opening(" The capital, of France is Paris.\nEND") == "the capital of"
    assert features(" Yes.\nEND") == ("w1:yes", "len:0")


# ---------------------------------------------------------------- the default run's pairs


def test_no_kind_of_the_shipped_pools_pairs_is_marked_by_length_or_by_an_opening(pool_pairs):
    """Every kind's length rule near chance, at least 30% distinct three-word openings, and no
    opening the chosen lack on more than 10% of a kind, on the default pool and the larger one."""
    _, (_, counts), _ = pool_pairs
    shortcuts = counts["train"]["shortcuts_by_kind"]
    assert {"unwarranted_refusal", "verbose_vague", "off_topic", "factually_incorrect", "format_violation"} <= set(shortcuts)
    for kind, report in shortcuts.items():
        if report["pairs"] < 50:
            continue  # compliance on the 8 declined requests: too few pairs to measure
        assert report["length_rule"] <= NEAR_CHANCE or kind == "off_topic", (kind, report)
        assert report["distinct_openings"] >= MIN_DISTINCT_OPENINGS, (kind, report)
        assert report["top_marker"] is None or report["top_marker"]["share"] <= MAX_MARKER_SHARE, (kind, report)


def test_refusals_and_vague_answers_are_near_chance_for_the_opening_classifier(pool_pairs):
    """They open with the chosen answer's own words (the question's subject, or the answer's opening
    up to its first new word) or the instruction's topic, at the chosen answer's length. With one
    fixed set of openers they separated at 0.99 and 0.96, led by the subject alone at 0.73 and 0.74."""
    name, (_, counts), _ = pool_pairs
    shortcuts = counts["train"]["shortcuts_by_kind"]
    for kind in ("unwarranted_refusal", "verbose_vague"):
        assert shortcuts[kind]["classifier"] <= CLASSIFIER_BOUND[name], (name, kind, shortcuts[kind])
    for kind in ("factually_incorrect", "off_topic"):
        assert shortcuts[kind]["classifier"] <= NEAR_CHANCE, (name, kind, shortcuts[kind])


def test_off_topic_pairs_draw_both_sides_from_nearly_one_mix_of_categories(pool_pairs):
    """The default, ``off_topic_from: other_categories``. The larger pool is 65% arithmetic; with
    donors' categories drawn uniformly its off-topic pairs had 65% arithmetic chosen answers against
    few arithmetic rejected ones, and the opening classifier separated them at 0.86 (length rule
    0.67); the two sides' mixes were 0.66 apart in total variation (0.27 on the default pool). With
    balanced shares: 0.24 and 0.15, and no category holds a third of either side (arithmetic: 65%
    of the chosen before)."""
    name, (train, _), by_id = pool_pairs
    pairs = [p for p in train if p.negative_kind == "off_topic"]
    by_answer = {dedup_key(e.response): e.category for e in by_id.values()}
    chosen = Counter(p.category for p in pairs)
    rejected = Counter(by_answer[dedup_key(p.rejected.removesuffix("\nEND"))] for p in pairs)
    assert sum(rejected.values()) == len(pairs) > 100
    total_variation = 0.5 * sum(abs(chosen[c] - rejected[c]) for c in chosen | rejected) / len(pairs)
    assert total_variation <= 0.3, (name, total_variation, chosen, rejected)
    assert max(chosen.values()) < len(pairs) / 3 and max(rejected.values()) < len(pairs) / 3, (name, chosen, rejected)


@pytest.mark.parametrize("path", [POOL, LARGE_POOL], ids=lambda path: path.stem)
def test_off_topic_pairs_from_the_same_category_answer_another_question_of_its_kind(path):
    """``off_topic_from: same_category``: every off-topic rejected is the answer of another example
    of the chosen one's category, so the two sides have one mix of categories by construction, and
    neither length nor opening tells them apart."""
    name, by_id = path.stem, {e.id: e for e in _pool(path)}
    train, counts = _pairs_of(path, NegativeSettings(off_topic_from="same_category"))
    report = counts["train"]["shortcuts_by_kind"]["off_topic"]
    assert report["length_rule"] <= NEAR_CHANCE and report["classifier"] <= NEAR_CHANCE, (name, report)
    pairs = [p for p in train if p.negative_kind == "off_topic"]
    by_answer = {dedup_key(e.response): e for e in by_id.values()}
    assert len(pairs) > 100, name
    for pair in pairs:
        donor = by_answer[dedup_key(pair.rejected.removesuffix("\nEND"))]
        assert donor.category == pair.category and donor.id != pair.instruction_id, (name, pair)


@pytest.mark.parametrize(
    ("counts", "shares"),
    [({"a": 80, "b": 10, "c": 10}, {"a": 1 / 3, "b": 0.1, "c": 0.1}),
     ({"a": 5, "b": 5}, {"a": 0.5, "b": 0.5}),
     ({}, {})],
)
def test_balanced_shares_cap_each_category_at_one_in_k(counts, shares):
    assert balanced_shares(Counter(counts)) == pytest.approx(shares)
    for category in counts:
        assert accept_share(balanced_shares(Counter(counts)), Counter(counts), category) == pytest.approx(
            min(1.0, shares[category] * sum(counts.values()) / counts[category]))


def _answer_word(example: SFTExample) -> str | None:
    """The chosen answer's first word the instruction does not hold: what it commits to."""
    held = set(dedup_key(example.instruction).split()) | CARRIER_WORDS
    return next((word for word in dedup_key(example.response).split() if word not in held), None)


def test_each_refusal_still_declines_and_each_vague_answer_commits_to_nothing(pool_pairs):
    """The openings changed, the defects did not: the evaluation's refusal detector finds every
    refusal, and no vague answer is a refusal or commits to the chosen answer's own word."""
    _, (train, _), by_id = pool_pairs
    refusals = [p for p in train if p.negative_kind == "unwarranted_refusal"]
    vague = [p for p in train if p.negative_kind == "verbose_vague"]
    assert len(refusals) > 100 and len(vague) > 100
    assert [p.rejected for p in refusals if not is_refusal(p.rejected)] == []
    assert [p.rejected for p in vague if is_refusal(p.rejected)] == []
    committed = []
    for pair in vague + refusals:
        word = _answer_word(by_id[pair.instruction_id])
        if word is not None and commits_to_answer(pair.rejected.removesuffix("\nEND"), (word,)):
            committed.append((word, pair.rejected))
    assert committed == []


# ---------------------------------------------------------------- phrasing


@pytest.mark.parametrize(
    ("instruction", "subject"),
    [
        ("What is the capital of France?", "The capital of France"),
        ("In one word, what is the capital of Spain?", "The capital of Spain"),
        ("What is 14 plus 31?", "14 plus 31"),
        ("How many inches are in 3 feet?", "The inches in 3 feet"),
        ("Define galaxy.", "The word galaxy"),
        ("Who wrote Hamlet?", None),
        ("Answer yes or no: Is Paris in France?", None),
    ],
)
def test_the_subject_is_read_from_the_instruction_never_from_the_answer(instruction, subject):
    assert subject_of(instruction) == subject


def test_a_sentence_to_complete_leads_its_negatives():
    assert fragment_of("Complete the sentence: A week has") == "A week has"
    assert fragment_of("What is 2 plus 2?") is None


def test_every_subject_led_refusal_is_a_refusal_and_no_vague_one_is():
    for cores, refusal in ((templates.SUBJECT_REFUSAL_CORES, True), (templates.FRAGMENT_REFUSAL_CORES, True),
                           (templates.SUBJECT_VAGUE_CORES, False), (templates.FRAGMENT_VAGUE_CORES, False)):
        for core in cores:
            assert is_refusal(templates.with_subject(core, "The capital of Peru")) is refusal, core


def test_subject_led_strings_aim_at_the_target_length():
    import random

    rng = random.Random(0)
    for target in (5, 6, 8, 12):
        text = subject_led(templates.SUBJECT_VAGUE_CORES, templates.VAGUE_CLOSERS, "The capital of Peru", target, rng)
        assert text.startswith("The capital of Peru") and abs(len(text.split()) - target) <= 1, text
    assert target_words(6, random.Random(1)) == 6 and target_words(6, random.Random(1), lean=-1) in (5, 6)


# ---------------------------------------------------------------- checkable references


def test_factual_negatives_only_for_items_with_a_checkable_reference():
    examples = _pool()
    negatives, counts = _negatives(examples)
    by_id = {e.id: e for e in examples}
    factual = [n for n in negatives if n.kind == "factually_incorrect"]
    assert factual and all(has_checkable_reference(by_id[n.instruction_id].instruction, by_id[n.instruction_id].category) for n in factual)
    assert not any(by_id[n.instruction_id].category in ("short_generation", "lists", "how_to") for n in factual)
    assert counts.to_dict()["items_not_served_by_kind"]["factually_incorrect"] > 0


@pytest.mark.parametrize(("instruction", "category", "checkable"), [
    ("Write a title for a story about a lantern.", "creative", False),
    ("Name exactly two birds.", "format_constraint", False),
    ("Name the largest planet.", "factual_qa", True),
    ("Describe a sunset.", "descriptions", False),
    ("What is 7 times 8?", "arithmetic", True),
    ("List three colours.", "misc", False),
])
def test_which_items_have_a_checkable_reference(instruction, category, checkable):
    assert has_checkable_reference(instruction, category) is checkable


# ---------------------------------------------------------------- the floor per kind


def _write_pool(tmp_path: Path) -> Path:
    path = tmp_path / "sft.jsonl"
    path.write_text(POOL.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def _returns_the_chosen(self, ex):
    return Built(ex.completion, "number")


def test_a_factual_builder_that_returns_the_chosen_stops_the_stage_naming_the_kind(tmp_path, monkeypatch):
    """Issue 21's injected bug: every factual negative equal to its chosen answer. Before the floor,
    all of them became "not applicable" with no warning; now the stage stops and says which kind
    fell short and why, and writes nothing."""
    monkeypatch.setattr(NegativeMaker, "_factual", _returns_the_chosen)
    with pytest.raises(GateError, match=r"factually_incorrect: 0 of \d+ planned negatives made \(floor 50%\).*equal_to_chosen") as caught:
        run_negatives(NegativeSettings(), sft_path=_write_pool(tmp_path), out_dir=tmp_path / "negatives")
    assert "off_topic" not in str(caught.value)
    assert not (tmp_path / "negatives" / "negatives.jsonl").exists()


def test_off_topic_short_of_donors_in_its_own_category_stops_and_names_the_setting(tmp_path):
    """Every example its own category: no same-category donor for anyone. The stage stops naming
    the kind and the setting that borrows across categories; with that setting (the default) it
    passes."""
    rows = [{"id": f"r{i}", "instruction": f"What is {i} times 3?", "response": f"{i} times 3 is {3 * i}.",
             "category": f"c{i}"} for i in range(60)]
    source = tmp_path / "pool.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(GateError, match=r"off_topic: 0 of \d+ planned.*negatives.off_topic_from: other_categories"):
        run_negatives(NegativeSettings(off_topic_from="same_category"), sft_path=source, out_dir=tmp_path / "same")
    assert not (tmp_path / "same" / "negatives.jsonl").exists()
    run_negatives(NegativeSettings(), sft_path=source, out_dir=tmp_path / "other")
    kinds = Counter(json.loads(line)["kind"] for line in (tmp_path / "other" / "negatives.jsonl").read_text().splitlines())
    assert kinds["off_topic"] > 0


def test_the_floor_can_be_lowered_to_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(NegativeMaker, "_factual", _returns_the_chosen)
    settings = NegativeSettings(on_kind_floor="warn")
    manifest = run_negatives(settings, sft_path=_write_pool(tmp_path), out_dir=tmp_path / "negatives")
    assert [w.split(":")[0] for w in manifest["warnings"]] == ["factually_incorrect"]
    assert "factually_incorrect" in caplog.text
    assert manifest["counts"]["produced_by_kind"].get("factually_incorrect", 0) == 0


def test_the_correct_builders_pass_the_floor(tmp_path):
    manifest = run_negatives(NegativeSettings(), sft_path=_write_pool(tmp_path), out_dir=tmp_path / "negatives")
    assert manifest["warnings"] == []


def test_pairs_count_a_kind_whose_rejecteds_equal_the_chosen_as_below_the_floor():
    examples = [SFTExample(f"e{i}", f"What is {i} plus 1?", f"{i} plus 1 is {i + 1}.", "arithmetic") for i in range(20)]
    negatives = [NegativeRecord(e.id, "factually_incorrect", render_completion(e.response), "number") for e in examples]
    negatives += [NegativeRecord(e.id, "off_topic", " Blue is a colour.\nEND", "from:x") for e in examples]
    _, _, counts = build_pairs(examples, negatives, PairSettings(max_pairs_per_instruction=5), lambda p, c: 0)
    messages = kind_shortfalls(counts, 0.5)
    assert len(messages) == 1 and messages[0].startswith("factually_incorrect: 0 usable pairs of 20 negatives")
    assert "equal_to_chosen 20" in messages[0]
    few = [n for n in negatives if n.instruction_id in {"e0", "e1", "e2"}]
    _, _, counts = build_pairs(examples, few, PairSettings(), lambda p, c: 0)
    assert kind_shortfalls(counts, 0.5) == [], "three negatives are too few to hold a kind to its floor"


# ---------------------------------------------------------------- streaming and imports


def test_duplicate_ids_are_still_refused_with_both_lines(tmp_path):
    rows = POOL.read_text(encoding="utf-8").splitlines()[:30]
    rows.append(rows[4])
    path = tmp_path / "sft.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"sft.jsonl:31: field 'id': duplicate id .* \(first seen on line 5\)"):
        run_negatives(NegativeSettings(), sft_path=path, out_dir=tmp_path / "out")


def test_negatives_and_pairs_on_the_default_pool_import_no_torch(tmp_path):
    """Neither stage needs a model, nor a tokenizer when no pair could be too long."""
    script = (
        "import sys, pathlib\n"
        "from stage1.negatives import NegativeSettings, run_negatives\n"
        "from stage1.pairs.settings import PairSettings\n"
        "from stage1.pairs.stage import run_pairs\n"
        f"out = pathlib.Path({str(tmp_path)!r})\n"
        f"run_negatives(NegativeSettings(), sft_path={str(POOL)!r}, out_dir=out / 'n')\n"
        f"(out / 'tok').mkdir(); (out / 'tok' / 'tokenizer.json').write_text('{{}}')\n"
        f"run_pairs(PairSettings(), sft_path={str(POOL)!r}, negatives_path=out / 'n' / 'negatives.jsonl', out_dir=out / 'p',"
        f" tokenizer_dir=out / 'tok', eval_items_path={str(ROOT / 'stage1/pools/eval/items.jsonl')!r})\n"
        "print(sorted({'torch', 'transformers', 'bitsandbytes'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr
    pairs = (tmp_path / "p" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert Counter(json.loads(line)["negative_kind"] for line in pairs)["verbose_vague"] > 50


def test_format_violations_separate_by_their_defect_length_alone(pool_pairs, monkeypatch):
    """Format violations are the one kind whose opening + length classifier stays above chance
    (0.70 on the default pool, 0.80 on the larger one). The length bucket alone scores the same and
    the openings alone sit at chance: running on past the answer is longer and stopping early is
    shorter *by definition*, so what separates them is the defect itself, not a marker."""
    import stage1.pairs.shortcuts as shortcuts

    name, (train, _), _ = pool_pairs
    pairs = [(p.instruction_id, p.chosen, p.rejected) for p in train if p.negative_kind == "format_violation"]
    both = classifier_accuracy(pairs)
    with_features = shortcuts.features
    monkeypatch.setattr(shortcuts, "features", lambda completion: with_features(completion)[:-1])
    openings_only = classifier_accuracy(pairs)
    monkeypatch.setattr(shortcuts, "features", lambda completion: with_features(completion)[-1:])
    length_only = classifier_accuracy(pairs)
    assert openings_only <= 0.55, (name, openings_only)
    assert abs(length_only - both) <= 0.02, (name, length_only, both)
