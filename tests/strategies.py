"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from stage1.format import FormatError, check_text

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
