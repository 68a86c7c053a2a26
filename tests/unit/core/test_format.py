"""The format: rendering, refusal of ambiguous text, and reading generations back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.format import (
    STOP_END,
    STOP_EOS,
    STOP_MAX_TOKENS,
    STOP_RUNAWAY,
    STOP_STRINGS,
    FormatError,
    normalize_text,
    parse_completion,
    render_completion,
    render_example,
    render_prompt,
)
from tests.strategies import format_text, raw_text


def test_prompt_and_completion_are_byte_exact():
    assert render_prompt("What is the capital of France?") == "Instruction: What is the capital of France?\nResponse:"
    assert render_completion("Paris.") == " Paris.\nEND"
    assert render_example("Q", "A") == "Instruction: Q\nResponse: A\nEND"


def test_prompt_ends_at_the_colon_not_a_space():
    assert render_prompt("x").endswith("Response:")
    assert not render_prompt("x").endswith(" ")
    assert "\\n" not in render_prompt("x")  # a real newline, never a literal backslash-n


def test_text_is_normalised_once():
    assert render_prompt("  e\u0301\r\nline two \r ") == "Instruction: \u00e9\nline two\nResponse:"
    assert normalize_text("a\r\nb\rc") == "a\nb\nc"


@pytest.mark.parametrize(
    "text, reason_part",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("first\nEND\nmore", "'END'"),
        ("first\n  END  ", "'END'"),
        ("Response: sneaky", "'Response:'"),
        ("ok\nInstruction: another", "'Instruction:'"),
        ("ok\n   Response: indented", "'Response:'"),
    ],
)
def test_ambiguous_text_is_refused_with_a_reason(text, reason_part):
    with pytest.raises(FormatError) as caught:
        render_completion(text)
    assert reason_part in caught.value.reason
    assert caught.value.field == "response"


@pytest.mark.parametrize(
    "text",
    ["BACKEND", "the WEEKEND", "THE END of the story", "What does Response: mean?", "<|endoftext|>", "C# and #tags"],
)
def test_content_that_only_looks_like_markers_is_accepted(text):
    assert render_completion(text) == f" {text}\nEND"


@given(format_text)
def test_accepted_text_is_a_fixed_point_of_normalisation(text):
    """Property: text the format accepts renders to its normalised form, and normalising twice changes nothing."""
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert render_completion(text) == f" {once}\nEND"


@given(raw_text)
def test_rendering_either_succeeds_or_raises_format_error(text):
    """Property: arbitrary text never crashes rendering with anything but FormatError."""
    try:
        render_prompt(text)
    except FormatError:
        pass


# ---------------------------------------------------------------- parse_completion


def test_end_line_stops():
    parsed = parse_completion(" Paris is the capital.\nEND\nInstruction: next")
    assert (parsed.response, parsed.stop_reason, parsed.stopped, parsed.runaway) == (
        "Paris is the capital.",
        STOP_END,
        True,
        False,
    )


@pytest.mark.parametrize("text", [" We meet at the WEEKEND", " Use the BACKEND", " THE END of the story"])
def test_end_inside_words_or_lines_is_content(text):
    parsed = parse_completion(text, finished_by_eos=True)
    assert parsed.stop_reason == STOP_EOS
    assert parsed.response == text.strip()


def test_runaway_is_detected_and_the_answer_before_it_kept():
    parsed = parse_completion(" Four.\nInstruction: What is 3+3?\nResponse: Six.\nEND")
    assert parsed.stop_reason == STOP_RUNAWAY
    assert parsed.runaway and not parsed.stopped
    assert parsed.response == "Four."


def test_runaway_on_the_first_line_answers_nothing():
    parsed = parse_completion("Instruction: something else")
    assert parsed.runaway and parsed.response == ""


def test_max_tokens_when_nothing_stopped_it():
    parsed = parse_completion(" an answer that goes on and on")
    assert (parsed.stop_reason, parsed.stopped) == (STOP_MAX_TOKENS, False)


def test_cleaning_keeps_code_blank_lines_and_hashes():
    body = "Use C# like this:\n\n```csharp\n# not a comment to delete\nConsole.WriteLine(1);\n```\n\nMoving on, that is all."
    parsed = parse_completion(" " + body + "\nEND")
    assert parsed.response == body


@given(format_text)
def test_parse_inverts_render(response):
    """Property: parsing a rendered completion gives back the normalised response, stopped by END."""
    parsed = parse_completion(render_completion(response))
    assert parsed.response == normalize_text(response)
    assert parsed.stop_reason == STOP_END


@given(format_text, st.sampled_from(["\nInstruction: more", "\nEND", ""]))
def test_parse_never_returns_marker_lines(response, tail):
    """Property: the parsed response never contains an END line or a line starting a new instruction."""
    parsed = parse_completion(" " + normalize_text(response) + tail)
    for line in parsed.response.split("\n"):
        assert line.strip() != "END"
        assert not line.lstrip().startswith("Instruction:")


# ---------------------------------------------------------------- stop strings


@pytest.mark.parametrize("text", [" IF x\nENDIF", " Steps:\nENDPOINT", " the\nWEEKEND", " THE END of it", " x\nEND.", " x\nEND"])
def test_stop_strings_do_not_fire_inside_a_line(text):
    # " x\nEND" has no stop string yet: the trained model's eos or a base model's newline decides.
    assert not any(stop in text for stop in STOP_STRINGS)


@pytest.mark.parametrize("text", [" x\nEND\n", " x\nEND\n\nInstruction: y", " x\nInstruction:"])
def test_stop_strings_fire_on_an_end_line_or_a_new_instruction(text):
    assert any(stop in text for stop in STOP_STRINGS)


@given(raw_text, st.sampled_from(STOP_STRINGS), st.sampled_from(["", "\n", " more", "\nInstruction: x"]))
def test_text_stopped_by_a_stop_string_never_reads_as_eos(before, stop, after):
    """Property: text holding a stop string parses as ``end`` or ``runaway`` even when eos (padding,
    for Qwen) follows it, so padding after a stop-string stop is never mistaken for the model's eos."""
    parsed = parse_completion(before + stop + after, finished_by_eos=True)
    assert parsed.stop_reason in (STOP_END, STOP_RUNAWAY)
