"""The one plain format every stage shares, byte for byte.

    Instruction: {instruction}
    Response: {response}
    END

The prompt ends at the colon after ``Response``; the space before the response belongs to the
completion. With Qwen2's pre-tokenizer a colon is always its own chunk, so tokenizing the prompt
and the completion separately gives the same ids as tokenizing their concatenation. A prompt that
ends in ``"Response: "`` would not: the space merges into the next word (``" Paris"`` is one token).

Policy for text that could make the format ambiguous: it is refused, never escaped. Escaping would
need an un-escaping step in every consumer (training, generation, scoring), and one forgotten step
silently changes the data. Refused: empty text; any line that is exactly ``END`` (after stripping
surrounding whitespace); any line that starts, after leading whitespace, with ``Instruction:`` or
``Response:``. Accepted as plain content: ``END`` inside a line (``BACKEND``, ``THE END of it``),
``Response:`` in the middle of a line, special-token text such as ``<|endoftext|>`` (the tokenizer
helpers encode it as ordinary text, never as a special token), code, blank lines, tabs.

Pure: no I/O, no framework imports.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from stage1.core.text_keys import is_blank

#: A text of invisible characters only (zero-width spaces, soft hyphens, format characters) shows nothing.
BLANK_MESSAGE = "shows nothing: only whitespace and invisible characters (zero-width, soft hyphen, format)"

INSTRUCTION_TAG = "Instruction:"
RESPONSE_TAG = "Response:"
END_MARKER = "END"

STOP_END = "end"
STOP_EOS = "eos"
STOP_RUNAWAY = "runaway"
STOP_MAX_TOKENS = "max_tokens"
STOP_REASONS = (STOP_END, STOP_EOS, STOP_RUNAWAY, STOP_MAX_TOKENS)

#: Strings a generator stops on, matched as strings (never as single token ids). ``END`` stops it
#: only as a whole line: ``"\nEND\n"`` needs the newline after ``END``, so ``ENDIF``, ``ENDPOINT``
#: and ``END.`` go on. A trained model writes ``END`` and then eos, which stops it by itself; a base
#: model that goes on after ``END`` writes a newline next. Each string, once generated, makes
#: ``parse_completion`` end on an ``END`` line or a runaway, so a row stopped by one never reads as
#: ``eos`` whatever padding follows it (Qwen pads with eos). An ``END`` line the strings miss
#: (``"END "``, indented) costs tokens, not labels: ``parse_completion`` still ends there.
STOP_STRINGS = ("\n" + END_MARKER + "\n", "\n" + INSTRUCTION_TAG)


class FormatError(ValueError):
    """Text that the format cannot carry unambiguously. ``reason`` says why."""

    def __init__(self, reason: str, field: str = "text"):
        super().__init__(f"{field}: {reason}")
        self.reason = reason
        self.field = field


def normalize_text(text: str) -> str:
    """Unicode NFC, line endings to ``\\n``, surrounding whitespace stripped.

    The Qwen2 tokenizer normalises to NFC, so only NFC text survives an encode/decode round trip.
    """
    if not isinstance(text, str):
        raise FormatError(f"expected a string, got {type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text).strip()


def is_end_line(line: str) -> bool:
    """True when a line is the end marker as a whole line (not ``BACKEND`` or ``THE END``)."""
    return line.strip() == END_MARKER


def starts_with_tag(line: str) -> str | None:
    """The format tag a line starts with (after leading whitespace), or None."""
    stripped = line.lstrip()
    for tag in (INSTRUCTION_TAG, RESPONSE_TAG):
        if stripped.startswith(tag):
            return tag
    return None


def check_text(text: str, field: str) -> str:
    """Normalise ``text`` and refuse what would make the format ambiguous.

    Raises:
        FormatError: empty text, an ``END`` line, or a line starting with a format tag.
    """
    normalized = normalize_text(text)
    if not normalized:
        raise FormatError("is empty (or only whitespace)", field)
    if is_blank(normalized):  # the text is kept as given; only the check sees through invisible characters
        raise FormatError(BLANK_MESSAGE, field)
    for number, line in enumerate(normalized.split("\n"), start=1):
        if is_end_line(line):
            raise FormatError(f"line {number} is exactly {END_MARKER!r}, which is the end marker", field)
        tag = starts_with_tag(line)
        if tag is not None:
            raise FormatError(f"line {number} starts with {tag!r}, which is a format tag", field)
    return normalized


def render_prompt(instruction: str) -> str:
    """``"Instruction: {instruction}\\nResponse:"``, ending at the colon.

    Raises:
        FormatError: see ``check_text``.
    """
    return f"{INSTRUCTION_TAG} {check_text(instruction, 'instruction')}\n{RESPONSE_TAG}"


def instruction_from_prompt(prompt: str) -> str | None:
    """The instruction ``render_prompt`` was given, read back from its prompt; ``None`` for text
    that is not a prompt in this format."""
    prefix, suffix = f"{INSTRUCTION_TAG} ", f"\n{RESPONSE_TAG}"
    if not (prompt.startswith(prefix) and prompt.endswith(suffix)) or len(prompt) < len(prefix) + len(suffix):
        return None
    return prompt[len(prefix) : -len(suffix)]


def render_completion(response: str) -> str:
    """``" {response}\\nEND"``: the leading space belongs to the completion.

    Raises:
        FormatError: see ``check_text``.
    """
    return f" {check_text(response, 'response')}\n{END_MARKER}"


def render_example(instruction: str, response: str) -> str:
    """Prompt and completion together, as a few-shot exemplar or a training row reads."""
    return render_prompt(instruction) + render_completion(response)


@dataclass(frozen=True)
class ParsedCompletion:
    """What a model generated after a prompt, read back.

    Attributes:
        response: the answer text, normalised; empty when the model wrote nothing before stopping.
        stop_reason: one of ``STOP_REASONS``.
        stopped: True only when the model ended on its own (``end`` or ``eos``).
        runaway: True when the raw text went on into a new ``Instruction:``; measured on the raw
            text, so it stays True even though the response before it is kept.
    """

    response: str
    stop_reason: str
    stopped: bool
    runaway: bool


def parse_completion(text: str, *, finished_by_eos: bool = False) -> ParsedCompletion:
    """Read generated text (everything after the prompt, special tokens removed).

    ``END`` counts only as a whole line; a line starting with ``Instruction:`` is a runaway;
    whichever comes first ends the response. Without either, the generation ended by eos when
    ``finished_by_eos`` is set, otherwise it hit the token limit. Nothing inside the response is
    deleted: code blocks, blank lines and ``#`` survive; only the text is normalised.
    """
    raw = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = raw.split("\n")
    for index, line in enumerate(lines):
        if is_end_line(line):
            return _parsed(lines[:index], STOP_END, stopped=True, runaway=False)
        if line.lstrip().startswith(INSTRUCTION_TAG):
            return _parsed(lines[:index], STOP_RUNAWAY, stopped=False, runaway=True)
    reason = STOP_EOS if finished_by_eos else STOP_MAX_TOKENS
    return _parsed(lines, reason, stopped=finished_by_eos, runaway=False)


def _parsed(lines: list[str], reason: str, *, stopped: bool, runaway: bool) -> ParsedCompletion:
    return ParsedCompletion(normalize_text("\n".join(lines)), reason, stopped, runaway)
