"""Text that only looks the same, or only looks empty: the comparison keys see through zero-width
and format characters and look-alike letters; the written text is never changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1 import cli
from stage1.core.errors import EXIT_GATE, EXIT_INPUT
from stage1.core.format import FormatError, check_text
from stage1.core.leakage import find_leaks
from stage1.core.text_keys import dedup_key, is_blank, loose_text

ROOT = Path(__file__).resolve().parents[3]
ITEMS = ROOT / "stage1" / "pools" / "eval" / "items.jsonl"
EVAL = "Which city is the capital of Italy?"
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\u200e", "\u202e", "\ufe0f", "\U000e0041", "\u180e", "\u034f"]
DISGUISES = {
    "zero-width space": "Which ci\u200bty is the cap\u200bital of Italy?",
    "soft hyphens": "Which city is the capi\u00adtal of It\u00adaly?",
    "joiners and a BOM": "\ufeffWhich\u200d city is the\u2060 capital of Italy?",
    "bidi controls": "Which city is the \u202acapital\u202c of Italy?",
    "Cyrillic look-alikes": "Which city is the c\u0430pit\u0430l \u043ef It\u0430ly?",
    "Greek look-alikes": "Which city is the capital \u03bff \u0399taly?",
    "fullwidth letters": "Which city is the \uff43\uff41\uff50\uff49\uff54\uff41\uff4c of Italy?",
    "all of them": "Wh\u200bich c\u0456ty \u00adis the c\u0430p\u200dital \u03bff \uff29taly?",
}


@pytest.mark.parametrize("name", list(DISGUISES))
def test_a_disguised_instruction_has_the_plain_ones_key(name):
    assert dedup_key(DISGUISES[name]) == dedup_key(EVAL) == "which city is the capital of italy"


@given(st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs")), min_size=1, max_size=40),
       st.lists(st.tuples(st.integers(0, 40), st.sampled_from(INVISIBLE)), max_size=6))
def test_invisible_characters_anywhere_leave_the_key_unchanged(text, insertions):
    """Property: inserting default-ignorable or format characters anywhere never changes ``dedup_key``."""
    disguised = text
    for position, character in insertions:
        disguised = disguised[:position] + character + disguised[position:]
    assert dedup_key(disguised) == dedup_key(text)


@pytest.mark.parametrize("text", ["\u200b", "\u200b\u00ad\u2060", " \ufeff\n\u200d ", "\U000e0020\U000e0041"])
def test_invisible_only_text_is_blank_and_refused_as_text(text):
    assert is_blank(text)
    with pytest.raises(FormatError, match="shows nothing|is empty"):
        check_text(text, "response")


def test_the_written_text_keeps_its_characters():
    """Normalisation is for comparison keys only: the text a stage writes is the text it was given."""
    text = "It is Rom\u200be, in It\u0430ly."
    assert check_text(text, "response") == text
    assert loose_text(text) == "It is Rome, in Italy." and not is_blank(text)
    assert dedup_key("Москва") == dedup_key("Москва") and dedup_key("5 - 3") != dedup_key("5 + 3")


def test_a_number_of_another_script_is_not_mapped_onto_an_ascii_digit():
    assert dedup_key("\u09ea") != dedup_key("8")  # Bengali four looks like 8: letters only are mapped


@pytest.mark.parametrize("name", list(DISGUISES))
def test_the_leakage_gate_finds_a_disguised_evaluation_item(name):
    leaks = find_leaks([("e1", EVAL)], {"train": [("t1", DISGUISES[name])]})
    assert [(leak.match, leak.eval_id, leak.train_id) for leak in leaks] == [("exact", "e1", "t1")]


def test_check_leakage_finds_an_item_hidden_by_zero_width_and_cyrillic_letters(tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"id": "t1", "instruction": DISGUISES["all of them"]}) + "\n")
    assert cli.main(["check-leakage", "--in", f"train={train}", "--in", f"eval_items={ITEMS}"]) == EXIT_GATE
    assert "eval-factual_qa-001" in capsys.readouterr().out


def test_sft_data_refuses_an_invisible_response_and_gates_a_disguised_item(tmp_path, capsys):
    rows = [json.loads(line) for line in (ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl").read_text().splitlines()]
    blank = tmp_path / "blank.jsonl"
    blank.write_text("".join(json.dumps(row) + "\n" for row in [*rows[:20], {**rows[20], "response": "\u200b\u00ad"}]))
    assert cli.main(["sft-data", "--in", f"instructions={blank}", "--in", f"eval_items={ITEMS}", "--out", str(tmp_path / "a")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"{blank}:21" in err and "field 'response'" in err and "shows nothing" in err
    leaky = tmp_path / "leaky.jsonl"
    disguised = {"id": "x-1", "category": "factual_qa", "instruction": DISGUISES["Cyrillic look-alikes"], "response": "Rome is."}
    leaky.write_text("".join(json.dumps(row) + "\n" for row in [*rows, disguised]))
    assert cli.main(["sft-data", "--in", f"instructions={leaky}", "--in", f"eval_items={ITEMS}", "--out", str(tmp_path / "b")]) == EXIT_GATE
    assert "eval-factual_qa-001" in capsys.readouterr().err


def test_the_confusables_table_is_the_generators_output():
    pytest.importorskip("confusable_homoglyphs", reason="the generator's data package is a dev dependency")
    check = subprocess.run([sys.executable, str(ROOT / "fixtures" / "make_confusables.py"), "--check"], capture_output=True)
    assert check.returncode == 0, "stage1/core/confusables.py differs: run python fixtures/make_confusables.py"


def test_every_format_character_of_this_pythons_unicode_is_invisible():
    """The ranges are written out (a scan at import would cost every command); this keeps them whole."""
    import sys
    import unicodedata

    from stage1.core.text_keys import INVISIBLE_RANGES

    covered = {code for low, high in INVISIBLE_RANGES for code in range(low, high + 1)}
    missing = [hex(code) for code in range(sys.maxunicode + 1) if unicodedata.category(chr(code)) == "Cf" and code not in covered]
    assert missing == []
