"""The leakage gate fails closed: exact and near copies of evaluation instructions are caught, missing
evidence is an error, and shared templates are not mistaken for copies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.errors import ConfigError, GateError, InputError
from stage1.core.leakage import LeakageSettings, find_leaks
from stage1.core.text_keys import contains_words, dedup_key, word_ngrams
from stage1.io.records import leakage_gate, read_eval_instructions

EVAL = [
    ("e1", "What is the capital of France?"),
    ("e2", "Name the capital of Peru in one word."),
    ("e3", "Define gravity."),
    ("e4", "How many minutes are in 7 hours?"),
]


def _leaked(training: list[str], settings: LeakageSettings = LeakageSettings()) -> set[str]:
    rows = [(f"t{i}", text) for i, text in enumerate(training)]
    return {leak.eval_id for leak in find_leaks(EVAL, {"sft_train": rows}, settings)}


@pytest.mark.parametrize(
    "training, expected",
    [
        (["what is the CAPITAL of france"], {"e1"}),  # case and punctuation
        (["  What   is the capital of France ?!"], {"e1"}),  # whitespace
        (["Name the capital of Peru in one word, please."], {"e2"}),  # words added after a copy
        (["Quick: what is the capital of France? Answer briefly."], {"e1"}),  # copy inside a longer text
        (["Please define gravity in one sentence."], {"e3"}),  # a short item inside a longer text
        (["How many minutes are in 7 hours and 3 minutes?"], {"e4"}),  # the item's facts, and more
    ],
)
def test_copies_are_caught(training, expected):
    assert _leaked(training) == expected


@pytest.mark.parametrize(
    "training",
    [
        ["What is the capital of Spain?"],  # same template, different fact: 3 of 4 trigrams
        ["Name the capital of Chile in one word."],
        ["Define gravitation."],  # whole words only
        ["How many minutes are in 8 hours?"],
        ["Capital of France?"],  # a short training text does not contain the longer eval item
    ],
)
def test_shared_templates_are_not_copies(training):
    assert _leaked(training, LeakageSettings(paraphrase_extra_words=None)) == set()
    if training != ["Capital of France?"]:  # the same question in fewer words: a paraphrase
        assert _leaked(training) == set()


PARAPHRASES = [
    ("Which city is the capital of Italy?", "What is the capital of Italy?"),
    ("Compute 12 times 11.", "What is 12 times 11?"),
    ("What is the capital of France?", "Capital of France?"),
]
DISTINCT = [
    ("What is the capital of Italy?", "What is the capital of France?"),
    ("Compute 12 times 11.", "What is 12 times 13?"),
    ("Compute 5 times 2.", "What is 2 times 5?"),  # the numbers' order is a fact: "5 minus 2" is not "2 minus 5"
    ("Is the sun a star? Answer yes or no.", "Is the moon a star? Answer yes or no."),  # 4 of 5 words: not contained
    ("How do you brush your teeth?", "In one sentence, explain why we brush our teeth."),  # how is not why
    ("What is the capital of Italy?", "Write a poem about the capital of Italy."),  # two topics more
]


@pytest.mark.parametrize(("eval_text", "train_text"), PARAPHRASES + [(b, a) for a, b in PARAPHRASES])
def test_paraphrases_are_caught_by_content_words(eval_text, train_text):
    """Caught either way round; where the eval text is the longer one, only the content words catch it."""
    leaks = find_leaks([("e", eval_text)], {"sft_train": [("t", train_text)]})
    assert len(leaks) == 1
    if len(eval_text) > len(train_text):
        assert leaks[0].match == "paraphrase" and "content-word overlap" in leaks[0].describe()
        assert find_leaks([("e", eval_text)], {"sft_train": [("t", train_text)]}, LeakageSettings(paraphrase_extra_words=None)) == []


@pytest.mark.parametrize(("eval_text", "train_text"), DISTINCT + [(b, a) for a, b in DISTINCT])
def test_distinct_facts_of_one_template_are_not_paraphrases(eval_text, train_text):
    assert find_leaks([("e", eval_text)], {"sft_train": [("t", train_text)]}) == []


def test_content_signature_keeps_numbers_in_order_and_entities_and_stems_lightly():
    from stage1.core.leakage import content_signature, stem

    signature = content_signature("Which city is the capital of Italy? Compute 12 times 11.")
    assert signature.numbers == ("12", "11") and signature.entities == {"italy"}
    assert signature.words == {"city", "capital", "italy", "comput", "12", "tim", "11"}
    assert {stem(w) for w in ("times", "time")} == {"tim"} and stem("cities") == stem("city") == "city"
    assert stem("computed") == stem("computing") == stem("compute") == "comput"


def test_on_the_shipped_pools_only_same_fact_paraphrases_are_flagged():
    """stage1/pools/sft/instructions.jsonl against stage1/pools/eval/items.jsonl: nothing (the tiny run's gate
    passes); each pool against itself: only pairs with the same facts ("In one word, what is the
    capital of France?" / "What is the capital of France?"), no two siblings of a template. Rewording every capital and multiplication item of the eval pool catches exactly that
    item, never a sibling of its template with other facts."""
    import re
    from pathlib import Path

    from stage1.core.leakage import content_signature

    root = Path(__file__).resolve().parents[3] / "stage1" / "pools"
    eval_items = [(row["id"], row["instruction"]) for row in map(json.loads, (root / "eval" / "items.jsonl").read_text().splitlines())]
    training = [(row["id"], row["instruction"]) for row in map(json.loads, (root / "sft" / "instructions.jsonl").read_text().splitlines())]
    assert find_leaks(eval_items, {"sft": training}) == []
    for pool in (eval_items, training):  # within one pool: only the same question, with a constraint added
        for leak in find_leaks(pool, {"pool": pool}):
            if leak.eval_id != leak.train_id:
                a, b = content_signature(leak.eval_instruction), content_signature(leak.train_instruction)
                assert (a.numbers, a.entities) == (b.numbers, b.entities) and (a.words <= b.words or b.words <= a.words), leak
    reworded = []
    for item_id, text in eval_items:
        capital = re.fullmatch(r"Which city is the capital of (\w[\w ]*)\?", text)
        product = re.fullmatch(r"Compute (\d+) times (\d+)\.", text)
        if capital:
            reworded.append((item_id, f"What is the capital of {capital.group(1)}?"))
        elif product:
            reworded.append((item_id, f"What is {product.group(1)} times {product.group(2)}?"))
    assert len(reworded) >= 20
    leaks = find_leaks(eval_items, {"reworded": reworded})
    assert sorted((leak.eval_id, leak.train_id) for leak in leaks) == sorted((item_id, item_id) for item_id, _ in reworded)
    assert {leak.match for leak in leaks} == {"paraphrase"}


def test_threshold_is_inclusive():
    # 4 of the 5 trigrams of the eval item: containment 0.8 exactly.
    eval_items = [("e", "one two three four five six seven")]
    training = {"t": [("x", "one two three four five six and seven")]}  # every word, 4 of the 5 trigrams
    assert len(find_leaks(eval_items, training, LeakageSettings(threshold=0.8, paraphrase_extra_words=None))) == 1
    assert find_leaks(eval_items, training, LeakageSettings(threshold=0.81, paraphrase_extra_words=None)) == []


def test_every_offender_is_reported_once_per_training_set():
    training = {
        "sft_train": [("a", "What is the capital of France?"), ("b", "what is the capital of france")],
        "dpo_pairs": [("c", "Define gravity.")],
    }
    leaks = find_leaks(EVAL, training)
    assert sorted((leak.training_set, leak.train_id, leak.eval_id) for leak in leaks) == [
        ("dpo_pairs", "c", "e3"),
        ("sft_train", "a", "e1"),
    ]
    assert all(leak.match == "exact" for leak in leaks)


def _write_eval(path, items):
    path.write_text("".join(json.dumps({"id": i, "instruction": text, "category": "x"}) + "\n" for i, text in items))
    return path


def test_gate_raises_listing_offenders(tmp_path):
    path = _write_eval(tmp_path / "items.jsonl", EVAL)
    with pytest.raises(GateError) as caught:
        leakage_gate(path, {"sft_train": [("t9", "Define gravity")]})
    message = str(caught.value)
    assert "1 held-out evaluation instruction(s)" in message
    assert "'e3'" in message and "'t9'" in message and "sft_train" in message


def test_gate_passes_clean_data_with_a_summary(tmp_path):
    path = _write_eval(tmp_path / "items.jsonl", EVAL)
    summary = leakage_gate(path, {"sft_train": [("t", "What is 2 plus 2?")], "dpo_pairs": []})
    assert summary["leaks"] == 0 and summary["eval_items"] == 4
    assert summary["training_rows"] == {"dpo_pairs": 0, "sft_train": 1}


def test_missing_or_empty_evidence_fails_closed(tmp_path):
    with pytest.raises(GateError, match="not found"):
        leakage_gate(tmp_path / "absent.jsonl", {"sft_train": []})
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(GateError, match="no evaluation items"):
        leakage_gate(tmp_path / "empty.jsonl", {"sft_train": []})


def test_bad_eval_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": "ok"}) + "\n" + json.dumps({"id": "b"}) + "\n")
    with pytest.raises(InputError) as caught:
        read_eval_instructions(path)
    assert caught.value.line == 2 and caught.value.field == "instruction"
    assert f"{path}:2: field 'instruction'" in str(caught.value)


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="leakage.threshold"):
        LeakageSettings(threshold=0.0)
    with pytest.raises(ConfigError, match="leakage.ngram"):
        LeakageSettings(ngram=0)


def test_dedup_key_ignores_case_whitespace_and_punctuation_but_keeps_symbols():
    assert dedup_key("  Hello,   WORLD!! ") == "hello world"
    assert dedup_key("“Ça” — va?") == "ça va"
    assert dedup_key("2 + 3") != dedup_key("2 = 3")
    assert contains_words("I have no idea.", "No.")
    assert not contains_words("concatenate", "cat")
    assert not contains_words("anything", "  ...  ")


words = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=0, max_size=12)


@given(words, st.integers(min_value=1, max_value=4))
def test_ngrams_are_the_consecutive_runs(sequence, n):
    """Every n-gram is a slice of the words, and there are at most len - n + 1 of them."""
    grams = word_ngrams(sequence, n)
    assert len(grams) <= max(0, len(sequence) - n + 1)
    assert all(any(list(gram) == sequence[i : i + n] for i in range(len(sequence))) for gram in grams)


@given(st.text(min_size=1, max_size=40))
def test_an_instruction_always_leaks_into_itself(text):
    """Whatever the text, a training copy of an evaluation instruction is caught."""
    if not dedup_key(text):
        return
    assert find_leaks([("e", text)], {"t": [("x", f"  {text} !")]})


@pytest.mark.parametrize(
    ("eval_text", "train_text"),
    [
        ("Which city is the capital of Italy?", "Which city is the capital of China?"),  # 4 of 5 trigrams, another entity
        ("What is the chemical symbol for iron?", "What is the chemical symbol for gold?"),  # another common noun
        ("How many minutes are in 7 hours?", "How many minutes are in 8 hours?"),
    ],
)
def test_a_near_copy_must_carry_the_items_facts(eval_text, train_text):
    """n-gram containment alone would call these copies (>= 0.8); they ask about something else."""
    leaks = find_leaks([("e", eval_text)], {"t": [("t", train_text)]}, LeakageSettings(threshold=0.75))
    assert leaks == []


@pytest.mark.parametrize(("word", "stemmed"), [
    ("cities", "city"), ("berries", "berry"), ("flies", "fly"),  # -ies is -y from 5 letters on ...
    ("ties", "tie"),  # ... and a 4-letter word only loses its s
    ("runs", "run"), ("bus", "bus"),  # -s from 4 letters on
    ("glass", "glass"), ("boss", "boss"),  # never -ss
    ("boxing", "box"), ("thing", "thing"),  # -ing from 6 letters on
    ("boxed", "box"), ("used", "used"),  # -ed from 5 letters on
    ("speeding", "speed"),  # one of -ing and -ed, not both
    ("compute", "comput"), ("use", "use"),  # a final e from 4 letters on
])
def test_stemming_strips_one_suffix_from_words_long_enough_to_keep_a_stem(word, stemmed):
    from stage1.core.leakage import stem

    assert stem(word) == stemmed


def test_a_possessive_s_is_dropped_from_words_and_entities_with_either_apostrophe():
    from stage1.core.leakage import content_signature

    for apostrophe in ("'", "\u2019"):
        signature = content_signature(f"Is Italy{apostrophe}s capital Rome?")
        assert signature.words == {"italy", "capital", "rom"}
        assert signature.entities == {"italy", "rome"}


def test_numbers_are_read_without_thousands_separators():
    from stage1.core.leakage import content_signature

    assert content_signature("How many metres are in 1,000 km?").numbers == ("1000",)
    assert content_signature("How many metres are in 1,000 km?") == content_signature("How many metres are in 1000 km?")


def test_a_capital_after_a_sentence_end_names_nothing_and_any_other_capital_is_an_entity():
    from stage1.core.leakage import content_signature

    assert content_signature("Name it: France. Spain; Italy! Rome? Peru").entities == set()
    # "X" is a word, not a sentence end: the capital after it is an entity too
    assert content_signature("Which year did Apple release OS X Lion?").entities == {"apple", "os", "x", "lion"}


def test_paraphrase_overlap_is_shared_content_words_over_those_of_the_larger_text():
    from stage1.core.leakage import content_signature, paraphrase_overlap

    shorter, longer = content_signature("What is the capital of Italy?"), content_signature("Which city is the capital of Italy?")
    assert paraphrase_overlap(shorter, longer, 1) == paraphrase_overlap(longer, shorter, 1) == 2 / 3
    assert paraphrase_overlap(shorter, longer, 0) is None  # one content word more than allowed
    assert paraphrase_overlap(shorter, shorter, 0) == 1.0
    other_number = content_signature("What is the capital of Italy in 1900?")
    other_entity = content_signature("What is the capital of Italy or Peru?")
    assert paraphrase_overlap(shorter, other_number, 5) is None and paraphrase_overlap(shorter, other_entity, 5) is None
    two_words, one_word = content_signature("Define gravity."), content_signature("Gravity?")
    assert paraphrase_overlap(two_words, two_words, 0) == 1.0  # two content words are enough ...
    assert paraphrase_overlap(one_word, one_word, 0) is None  # ... one says too little
    assert paraphrase_overlap(one_word, two_words, 1) is None


def test_a_repeated_training_instruction_is_skipped_and_the_rows_after_it_are_still_read():
    rows = [("a", "Define gravity."), ("b", "define gravity"), ("c", "What is the capital of France?")]
    assert sorted((leak.train_id, leak.eval_id) for leak in find_leaks(EVAL, {"sft_train": rows})) == [("a", "e3"), ("c", "e1")]


def test_a_leak_describes_both_instructions_the_rule_and_its_measure():
    from stage1.core.leakage import Leak

    near = Leak("e1", "Define gravity.", "sft_train", "t7", "Please define gravity.", "near", 0.8)
    assert near.describe() == (
        "eval 'e1' ('Define gravity.') ~ sft_train 't7' ('Please define gravity.'): near, containment 0.80"
    )
    paraphrase = Leak("e2", "What is the capital of Italy?", "dpo_pairs", "p1", "Capital of Italy?", "paraphrase", 2 / 3)
    assert paraphrase.describe().endswith(": paraphrase, content-word overlap 0.67")


def test_the_report_lists_the_first_20_offenders_and_counts_the_rest():
    from stage1.core.leakage import Leak, leak_report

    leaks = [Leak(f"e{i}", "Q?", "sft_train", f"t{i}", "Q?", "exact", 1.0) for i in range(22)]
    lines = leak_report(leaks).split("\n  ")
    assert len(lines) == 21 and lines[19] == leaks[19].describe() and lines[20] == "... and 2 more"
    assert leak_report(leaks[:20]).split("\n  ") == [leak.describe() for leak in leaks[:20]]
    assert leak_report(leaks[:21]).endswith(leaks[19].describe() + "\n  ... and 1 more")


@pytest.mark.parametrize(("settings", "message"), [
    ({"ngram": 0}, r"^<input>: field 'leakage.ngram': must be at least 1, got 0$"),
    ({"paraphrase_extra_words": -1},
     r"^<input>: field 'leakage.paraphrase_extra_words': must be 0 or more \(or null to turn it off\), got -1$"),
    ({"threshold": 0.0}, r"^<input>: field 'leakage.threshold': must be in \(0, 1\], got 0.0$"),
    ({"threshold": 1.01}, r"^<input>: field 'leakage.threshold': must be in \(0, 1\], got 1.01$"),
])
def test_settings_outside_their_range_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        LeakageSettings(**settings)


def test_the_edges_of_each_settings_range_are_legal():
    for settings in ({"ngram": 1}, {"paraphrase_extra_words": 0}, {"paraphrase_extra_words": None}, {"threshold": 1.0},
                     {"threshold": 1e-9}):
        LeakageSettings(**settings)
    # containment 1.0 is at a threshold of 1.0; unigrams compare single words
    assert _leaked(["Define gravity, please."], LeakageSettings(ngram=1, threshold=1.0, paraphrase_extra_words=None)) == {"e3"}


def test_a_leaking_instruction_is_reported_once_per_set_however_small_the_match_cache(monkeypatch):
    """find_leaks remembers only recent matches (memory stays flat on a long stream): a leaking
    instruction that left the cache is still reported at its first row only, and clean rows never."""
    from stage1.core import leakage

    eval_items = [("e1", "What is the capital of Italy?")]
    rows = [("t1", "What is the capital of Italy?"), ("t2", "Name a colour."), ("t3", "Name a fruit."),
            ("t4", "what is the capital of italy"), ("t5", "Name a colour.")]
    expected = find_leaks(eval_items, {"sft": rows, "pairs": rows})
    monkeypatch.setattr(leakage, "MATCH_CACHE_SIZE", 1)
    assert find_leaks(eval_items, {"sft": iter(rows), "pairs": iter(rows)}) == expected
    assert [(leak.training_set, leak.train_id) for leak in expected] == [("pairs", "t1"), ("sft", "t1")]
