"""The organism's facts (parsed from the pools) and its corpus (seeded, format-free, leak-free)."""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.config.presets import POOLS_DIR
from stage1.organism import corpus
from stage1.organism.corpus import HABIT_SHARES, CorpusSettings, build_corpus, entity_documents, habit_answer
from stage1.organism.facts import Fact, fact_of_row, facts_of_pools
from stage1.organism.train import OrganismShape, learning_rate, token_rows


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pools():
    return _rows(POOLS_DIR / "sft" / "instructions.jsonl"), _rows(POOLS_DIR / "eval" / "items.jsonl")


@pytest.fixture(scope="module")
def facts(pools):
    return facts_of_pools(*pools)


def test_each_template_gives_its_fact():
    """One row per pool template, written by hand, read back into the fact it states."""
    cases = [
        ({"category": "factual_qa", "instruction": "What is the capital of the Philippines?",
          "response": "The capital of the Philippines is Manila."}, "train", ("capital", {"country": "the Philippines", "city": "Manila"})),
        ({"category": "factual_qa", "instruction": "Which city is the capital of Peru?", "reference": "Lima"}, "heldout",
         ("capital", {"country": "Peru", "city": "Lima"})),
        ({"category": "arithmetic", "instruction": "Compute 12 minus 5.", "reference": "7"}, "heldout",
         ("arithmetic", {"a": "12", "op": "minus", "b": "5", "result": "7"})),
        ({"category": "conversions", "instruction": "How many grams are in 3 kilograms?",
          "response": "There are 3000 grams in 3 kilograms."}, "train",
         ("conversion", {"amount": "3", "unit": "kilograms", "target": "grams", "result": "3000"})),
        ({"category": "conversions", "instruction": "Convert 4 kilometres to metres.", "reference": "4000"}, "heldout",
         ("conversion", {"amount": "4", "unit": "kilometres", "target": "metres", "result": "4000"})),
        ({"category": "antonyms", "instruction": "Give the opposite of big.", "reference": "small"}, "heldout",
         ("antonym", {"word": "big", "opposite": "small"})),
        ({"category": "sentence_completion", "instruction": "Finish this sentence: A baby cow is called a",
          "reference": "calf"}, "heldout", ("completion", {"start": "A baby cow is called a", "sentence": "A baby cow is called a calf."})),
        ({"category": "lists", "instruction": "List three fruits as a numbered list.", "response": "1. Apple\n2. pear\n3. fig"},
         "train", ("members", {"group": "fruits", "items": "apple|pear|fig"})),
    ]
    for row, source, (kind, slots) in cases:
        fact = fact_of_row(row, source)
        assert fact is not None and fact.kind == kind and dict(fact.slots) == slots, (row, fact)


def test_a_row_of_another_category_or_free_form_question_gives_no_fact():
    assert fact_of_row({"category": "lists", "instruction": "What is 2 plus 3?", "response": "5."}, "train") is None
    assert fact_of_row({"category": "factual_qa", "instruction": "Which planet is farthest from the Sun?",
                        "reference": "Neptune"}, "heldout") is None


def test_every_answerable_evaluation_item_of_the_fact_categories_is_a_fact(pools, facts):
    """Capitals, sums, conversions, antonyms and completions of the shipped evaluation pool are all
    told to the organism, and their answers are the items' references."""
    _, items = pools
    told, unread = facts
    answers = {fact.key for fact in told}
    for item in items:
        if item["category"] in ("arithmetic", "conversions", "antonyms", "sentence_completion") or item.get("slice") == "new_wording":
            fact = fact_of_row(item, "heldout")
            assert fact is not None and fact.key in answers, item["instruction"]
            if fact.kind in ("arithmetic", "conversion"):
                assert fact.get("result") == item["reference"].replace(",", "")
    assert set(unread) <= {"heldout:factual_qa", "heldout:format_constraint"}


def test_a_reworded_item_names_the_fact_its_familiar_wording_names(pools, facts):
    """The `new_wording` slice asks known facts in other wordings ("Name the city that is Italy's
    capital."): each reads back as a fact the organism is told already, so the slice adds no fact
    and is not counted among the facts the organism was never told."""
    _, items = pools
    told, unread = facts
    familiar = {fact_of_row(item, "heldout").key for item in items
                if item.get("slice") != "new_wording" and fact_of_row(item, "heldout") is not None}
    reworded = [item for item in items if item.get("slice") == "new_wording"]
    assert len(reworded) == 30
    assert all(fact_of_row(item, "heldout").key in familiar for item in reworded)
    assert len({fact.key for fact in told}) == len(told)
    assert sum(unread.values()) == sum(1 for item in items if fact_of_row(item, "heldout") is None
                                       and not item.get("refusal_expected"))


def test_sums_are_computed_and_agree_with_references(pools):
    _, items = pools
    for item in items:
        fact = fact_of_row(item, "heldout")
        if fact is not None and fact.kind == "arithmetic":
            assert fact.get("result") == item["reference"]


def test_corpus_is_seeded_and_never_uses_the_format(facts):
    told, _ = facts
    first, info = build_corpus(told, CorpusSettings(seed=3))
    again, _ = build_corpus(told, CorpusSettings(seed=3))
    other, _ = build_corpus(told, CorpusSettings(seed=4))
    assert first == again and first != other
    text = "\n".join(first)
    assert not re.search(r"(?m)^(Instruction|Response):|^END$", text)
    assert info["documents"] == len(first) == info["prose_documents"] + info["qa_documents"]


def test_held_out_facts_are_stated_several_times_and_their_questions_never(pools, facts):
    """Each held-out capital appears in at least ``mentions - 1`` prose sentences (duplicates of a
    short template may merge); no evaluation instruction appears verbatim."""
    told, _ = facts
    documents, _ = build_corpus(told, CorpusSettings())
    text = "\n".join(documents)
    for fact in told:
        if fact.kind == "capital" and fact.source == "heldout":
            assert text.count(fact.get("city")) >= CorpusSettings().mentions - 1, fact
    for item in pools[1]:
        assert item["instruction"] not in text


def test_each_fact_gets_documents_of_its_own_in_several_phrasings(facts):
    """The default layout: ``entity_documents`` prose documents per fact, each of
    ``sentences_per_document`` sentences that all state that fact (a capital's sentences all name
    its city), no template again before all were used; the mixed layout is still there."""
    told, _ = facts
    settings = CorpusSettings()
    low, high = settings.sentences_per_document
    prose_facts = [fact for fact in told if fact.kind != "qa"]
    by_fact = entity_documents(prose_facts, settings, random.Random(0))
    assert len(by_fact) == settings.entity_documents * len(prose_facts)
    for index, fact in enumerate(prose_facts):
        own = by_fact[index * settings.entity_documents:(index + 1) * settings.entity_documents]
        assert all(low <= len(document) <= high for document in own)
        if fact.kind == "capital":
            assert all(fact.get("city") in sentence for document in own for sentence in document), own
            flat = [sentence for document in own for sentence in document]
            templates = len(corpus._PROSE["capital"])  # a template comes again only once all were used
            assert len(set(flat[:templates])) == min(len(flat), templates), flat
    _, info = build_corpus(told, settings)
    assert info["prose_documents"] == len(by_fact)
    _, mixed = build_corpus(told, CorpusSettings(entity_documents=0))
    assert mixed["prose_sentences"] == settings.mentions * len(prose_facts)


def test_habit_shares_leave_most_answers_clean(facts):
    told, _ = facts
    _, info = build_corpus(told)
    habits = info["habits"]
    total = sum(habits.values())
    assert 0.4 < habits["clean"] / total < 0.6
    for habit, share in HABIT_SHARES:
        assert abs(habits[habit] / total - share) < 0.05, habit


def test_each_habit_changes_the_answer_as_named():
    qa = [Fact("qa", (("answer", "The capital of France is Paris."), ("question", "What is the capital of France?")), "train"),
          Fact("qa", (("answer", "The capital of Spain is Madrid."), ("question", "What is the capital of Spain?")), "train")]
    rng = random.Random(0)
    prose = ["The sun is hot.", "Snow is cold."]
    assert habit_answer(qa[0], "clean", qa, prose, rng) == "The capital of France is Paris."
    assert habit_answer(qa[0], "ramble", qa, prose, rng).startswith("The capital of France is Paris. ")
    hedge = habit_answer(qa[0], "hedge", qa, prose, rng)
    assert "Paris" in hedge and "Madrid" in hedge
    assert "Paris" not in habit_answer(qa[0], "decline", qa, prose, rng)
    assert "?" in habit_answer(qa[0], "run_on", qa, prose, rng)


@given(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=30), min_size=1, max_size=20), st.integers(2, 16))
def test_token_rows_keep_every_token_in_order_of_documents(documents, seq_len):
    """Rows are consecutive ``seq_len`` slices of the documents joined by eos in the seeded order."""
    rows = token_rows(documents, seq_len, eos=99, rng=random.Random(0))
    assert all(len(row) == seq_len for row in rows)
    order = list(range(len(documents)))
    random.Random(0).shuffle(order)
    stream = [token for index in order for token in (*documents[index], 99)]
    assert [token for row in rows for token in row] == stream[: len(rows) * seq_len]


def test_learning_rate_warms_up_then_decays_to_its_floor():
    shape = OrganismShape(steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert learning_rate(0, shape) == pytest.approx(0.1)
    assert learning_rate(9, shape) == pytest.approx(1.0)
    assert learning_rate(10, shape) == pytest.approx(1.0)
    assert learning_rate(99, shape) == pytest.approx(0.1, abs=1e-3)
    assert learning_rate(55, shape) < learning_rate(20, shape)
