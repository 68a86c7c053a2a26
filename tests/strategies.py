"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from stage1.core.format import FormatError, check_text

# Pieces that stress the format and the tokenizer boundary.
TRICKY_PIECES = [
    "Response:",
    "Instruction:",
    "END",
    "BACKEND",
    "WEEKEND",
    " END",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "😀",
    "👩‍💻",
    "漢字",
    "日本語のテキスト",
    "مرحبا",
    "שלום",
    "e\u0301",  # decomposed é (combining mark)
    "\u0301",
    "\r\n",
    "\t",
    "\u00a0",  # NBSP
    "?\n",
    ".\n",
    " \n",
    "C#",
    "```python\nprint(1)\n```",
    "2024",
    "  ",
    ":",
]

raw_text = st.lists(
    st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(TRICKY_PIECES)), min_size=1, max_size=8
).map("".join)


def _acceptable(text: str) -> bool:
    try:
        check_text(text, "text")
    except FormatError:
        return False
    return True


#: Text the format accepts (arbitrary Unicode, tricky pieces included).
format_text = raw_text.filter(_acceptable)


# ---------------------------------------------------------------- SFT examples (negatives, pairs)

#: Realistic answers: numbers, entities, antonyms, yes/no, lists, and answers with nothing to falsify.
_REALISTIC_PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris.", "factual_qa"),
    ("What is 12 plus 30?", "12 plus 30 is 42.", "arithmetic"),
    ("What is the opposite of hot?", "The opposite of hot is cold.", "antonyms"),
    ("Answer yes or no: Is the sun a star?", "Yes.", "format_constraint"),
    ("In one word, what colour is grass?", "Green.", "format_constraint"),
    ("List three primary colours of light.", "Red, green and blue.", "lists"),
    ("How many minutes are in 3 hours?", "There are 180 minutes in 3 hours.", "conversions"),
    ("In which year did the Second World War end?", "It ended in 1945.", "factual_qa"),
    ("Say hello.", "Hello there!", "short_generation"),
    ("Give a number only: how many legs does a spider have?", "8", "format_constraint"),
    ("Write a short sentence about rain.", "Rain tapped softly on the window all night.", "short_generation"),
]

_CATEGORIES = ["factual_qa", "arithmetic", "lists", "how_to", "definitions"]


@st.composite
def sft_examples(draw, min_size: int = 1, max_size: int = 25):
    """Lists of SFTExample with unique ids: realistic rows mixed with arbitrary format-safe text,
    duplicate instructions included (the same question asked twice, in another case)."""
    from stage1.core.records import SFTExample

    rows = draw(
        st.lists(
            st.one_of(
                st.sampled_from(_REALISTIC_PAIRS),
                st.tuples(format_text, format_text, st.sampled_from(_CATEGORIES)),
                st.sampled_from(_REALISTIC_PAIRS).map(lambda r: (r[0].upper(), r[1], r[2])),
            ),
            min_size=min_size,
            max_size=max_size,
        )
    )
    return [
        SFTExample(id=f"ex{i}", instruction=check_text(q, "instruction"), response=check_text(r, "response"), category=c)
        for i, (q, r, c) in enumerate(rows)
    ]
