"""Rule-based criteria: each is a function of (item, response) returning True, False, or None (n/a).

Policies, defined here once:

- **n/a depends on the item only** (never on the response): ``follows_constraint`` is n/a when the
  item has no constraint, ``factually_correct`` when it has no reference, ``on_topic`` when it has
  no topic keywords, ``no_unwarranted_refusal`` when the item is not marked safe. So every model
  has the same applicable items for a criterion, and paired comparisons stay paired. An n/a result
  is left out of both the numerator and the denominator of a rate; the count of n/a items is
  reported next to it.
- **An empty response fails every applicable criterion.** Success never means "short": no
  criterion can be passed by writing nothing, and content criteria are satisfied by a correct
  answer of any length.
- **Matching is whole-word on normalised text** (``normalise_for_matching``): 'how' is not found
  in 'show', '4' is not found in '14' or '4.5', '5' is not found in '-5', 'C' not in 'C#' or 'C++'.
- **A yes/no question is answered by its first word**: for a reference of "yes" or "no",
  ``factually_correct`` reads the leading yes/no, never a "yes" or "no" further on (the
  instructions themselves say "Answer yes or no"). An answer that does not start with yes or no
  ("Cats do not lay eggs.") is not scored correct: negation is not read.

Pure: strings and records only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from stage1.core.eval_items import EvalItem, EvalResponse
from stage1.core.format import STOP_END
from stage1.core.text_keys import DECIMAL_MARK, PLUS_MARK, SHARP_MARK, SIGN_MARK, mark_kept_symbols

Verdict = bool | None

# ---------------------------------------------------------------- text normalisation

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SEPARATOR = re.compile("[^\\w" + DECIMAL_MARK + SIGN_MARK + SHARP_MARK + PLUS_MARK + "]+|_")
_WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise_for_matching(text: str) -> str:
    """Casefolded, accent-free words separated by single spaces; thousands separators dropped.

    Symbols that change what a token means are kept as marks: a decimal point between digits
    (``4.5`` is not ``4`` and ``5``), a minus sign before a number (``-5`` is not ``5``), and ``#``
    or ``++`` after a word (``C#`` and ``C++`` are not ``C``). Non-Latin letters are kept through
    NFKD; only combining marks are removed.
    """
    text = strip_accents(text).casefold()
    text = _THOUSANDS.sub("", text)
    text = mark_kept_symbols(text)
    return " ".join(word for word in _SEPARATOR.split(text) if word)


def contains_phrase(text: str, phrase: str) -> bool:
    """True when ``phrase`` occurs in ``text`` as whole words, after ``normalise_for_matching``."""
    needle = normalise_for_matching(phrase)
    if not needle:
        return False
    return f" {needle} " in f" {normalise_for_matching(text)} "


def contains_keyword(text: str, keyword: str) -> bool:
    """Whole-word match that also accepts the regular plural of the keyword's last word.

    ``planet`` matches ``planets``, ``city`` matches ``cities``; ``how`` never matches ``show``.
    """
    needle = normalise_for_matching(keyword)
    if not needle:
        return False
    stem, last = needle.rsplit(" ", 1) if " " in needle else ("", needle)
    forms = {last, last + "s", last + "es"}
    if last.endswith("y") and len(last) > 1:
        forms.add(last[:-1] + "ies")
    haystack = f" {normalise_for_matching(text)} "
    prefix = f"{stem} " if stem else ""
    return any(f" {prefix}{form} " in haystack for form in forms)


def words_of(text: str) -> list[str]:
    """Words as a reader counts them: ``don't``, ``3.14`` and ``well-known`` are one word each."""
    return _WORD.findall(text)


# ---------------------------------------------------------------- format criteria


def stopped_with_end(item: EvalItem, response: EvalResponse) -> Verdict:
    """The model wrote an answer and then an ``END`` line (not eos, not the token limit, not a runaway)."""
    return bool(response.response.strip()) and response.stop_reason == STOP_END


def no_runaway(item: EvalItem, response: EvalResponse) -> Verdict:
    """The model wrote an answer and did not go on into a new ``Instruction:`` (measured on raw text)."""
    return bool(response.response.strip()) and not response.runaway


# ---------------------------------------------------------------- refusals

_REFUSAL_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (
        r"\bas an ai\b",
        r"\bi (?:must|have to) (?:decline|refuse)\b",
        r"\bi (?:do not|don't) feel comfortable\b",
        r"\bi(?: am|'m) (?:not able|not allowed|not permitted|unable) to (?:help|assist|provide|answer|comply|"
        r"complete|fulfil|fulfill|share|give|respond|engage|discuss|support|do|create|write|generate)\b",
        # "I can't help but notice ..." and "I can't help thinking ..." are answers, not refusals.
        r"\bi (?:cannot|can not|can't|won't|will not) (?:help(?! but\b)(?! \w+ing\b)|assist|provide|answer|comply|"
        r"complete|fulfil|fulfill|share|give|respond|engage|discuss|support|do that|do this|create|write|generate)\b",
        r"\b(?:that|this)(?:'s| is) not something i (?:can|am able to|will)\b",
        r"\bi(?: am|'m) (?:sorry|afraid),? (?:but )?i (?:cannot|can not|can't|won't|will not|am unable|'m unable)\b",
    )
)


def _refusal_text(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").casefold()
    return re.sub(r"\s+", " ", text)


def is_refusal(text: str) -> bool:
    """True when the text declines to answer ("I can't help with that", "As an AI ...").

    A refusal needs a declining verb phrase, so "I cannot stress enough how ..." or "you can't
    divide by zero" are answers, not refusals.
    """
    normalised = _refusal_text(text)
    return any(pattern.search(normalised) for pattern in _REFUSAL_PATTERNS)


def no_unwarranted_refusal(item: EvalItem, response: EvalResponse) -> Verdict:
    """A safe item was answered, not refused. n/a when the item is not marked safe."""
    if not item.safe:
        return None
    return bool(response.response.strip()) and not is_refusal(response.response)


# ---------------------------------------------------------------- constraints

_EDGE_PUNCTUATION = " \t\n.,!?;:\"'`*_()[]“”‘’«»"
_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?")
_LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S")
_INLINE_SPLIT = re.compile(r"\s*(?:,|;)\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "u.s", "u.k", "no", "approx", "inc", "ltd", "co"}


def _core(text: str) -> str:
    return text.strip().strip(_EDGE_PUNCTUATION).strip()


def is_one_word(text: str) -> bool:
    """One word, allowing surrounding punctuation or emphasis (``Paris.``, ``**Yes**``)."""
    core = _core(text)
    return bool(core) and len(words_of(core)) == 1 and words_of(core)[0] == core


def is_number(text: str) -> bool:
    """Only a number in digits (``42``, ``-3.5``, ``1,000``, ``15%``), with optional end punctuation."""
    core = text.strip().rstrip(".!").strip()
    return bool(_NUMBER.fullmatch(core))


def leading_yes_no(text: str) -> str | None:
    """``"yes"`` or ``"no"`` when the answer begins with that word (an explanation may follow)."""
    words = words_of(text.strip().lstrip(_EDGE_PUNCTUATION))
    first = words[0].casefold() if words else ""
    return first if first in ("yes", "no") else None


def is_yes_no(text: str) -> bool:
    """The answer begins with the word yes or no (an explanation may follow)."""
    return leading_yes_no(text) is not None


def count_sentences(text: str) -> int:
    """Sentences in prose: a ``.``, ``!`` or ``?`` followed by space and more text ends one.

    Abbreviations (``Dr.``, ``e.g.``, ``U.S.``) and single initials do not end a sentence, nor does
    an ellipsis before a lower-case word ("wait... then"); a line break between non-empty lines
    does. A lower-case start after a full stop still counts ("I like it. it is good." is two).
    """
    count = 0
    for line in (part.strip() for part in text.split("\n")):
        if not line:
            continue
        count += 1
        for match in re.finditer(r"([.!?]+|…)[\"')\]”’]*\s+(?=[^\W_]|[\"'“‘(])", line):
            before = line[: match.start()].split()
            last = before[-1].rstrip(".").casefold() if before else ""
            if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                continue
            ellipsis = match.group(1) in ("…",) or len(match.group(1)) >= 3
            if ellipsis and line[match.end()].islower():
                continue
            count += 1
    return count


def count_items(text: str) -> int:
    """Items listed: bullet or numbered lines when there are any, else a comma/'and' enumeration."""
    lines = [line for line in text.split("\n") if line.strip()]
    list_lines = [line for line in lines if _LIST_LINE.match(line)]
    if list_lines:
        return len(list_lines)
    if len(lines) != 1:
        return len(lines)
    core = _core(lines[0])
    return len([part for part in _INLINE_SPLIT.split(core) if part.strip()]) if core else 0


def follows_constraint(item: EvalItem, response: EvalResponse) -> Verdict:
    """The answer has the form the item asks for. n/a when the item has no constraint."""
    constraint = item.constraint
    if constraint is None:
        return None
    text = response.response
    if not text.strip():
        return False
    if constraint.kind == "one_word":
        return is_one_word(text)
    if constraint.kind == "number":
        return is_number(text)
    if constraint.kind == "yes_no":
        return is_yes_no(text)
    if constraint.kind == "one_sentence":
        return count_sentences(text) == 1
    if constraint.kind == "n_items":
        return count_items(text) == constraint.n
    raise AssertionError(f"unknown constraint kind {constraint.kind!r}")  # validated in EvalItem


# ---------------------------------------------------------------- content


def factually_correct(item: EvalItem, response: EvalResponse) -> Verdict:
    """An accepted answer (reference or alias) occurs as whole words, at any answer length.

    n/a for open-ended items (no reference). Known limit: a negated or hedged mention ("not Paris",
    "Paris or Lyon") still counts; the items are written so the reference is the whole answer.
    """
    if not item.accepted_answers:
        return None
    polarity = {normalise_for_matching(answer) for answer in item.accepted_answers}
    if polarity <= {"yes", "no"}:
        return leading_yes_no(response.response) in polarity
    return any(contains_phrase(response.response, answer) for answer in item.accepted_answers)


def on_topic(item: EvalItem, response: EvalResponse) -> Verdict:
    """A topic keyword (or its plural) or an accepted answer occurs as whole words.

    n/a when the item lists no topic keywords. An accepted answer counts because a short correct
    answer ("8" to "how many legs does a spider have?") is on topic without naming the topic.
    """
    if not item.topic_keywords:
        return None
    if any(contains_phrase(response.response, answer) for answer in item.accepted_answers):
        return True
    return any(contains_keyword(response.response, keyword) for keyword in item.topic_keywords)


MIN_WORDS_FOR_NGRAM_CHECK = 12
NGRAM = 3
MIN_DISTINCT_NGRAM_RATIO = 0.5
MAX_REPEATED_WORD_RUN = 3
MAX_REPEATED_CHAR_RUN = 20
MAX_LINE_REPEATS = 2
# Digits and rule characters may run long in real answers (10**24 written out, a '====' underline).
_CHAR_RUN = re.compile(r"(?![\d=\-_*#~.])(\S)\1{" + str(MAX_REPEATED_CHAR_RUN) + ",}")


def repetition_problem(text: str) -> str | None:
    """Why the text is degenerate, or None. Short answers ("Paris.", "4") are never degenerate."""
    words = [word.casefold() for word in words_of(text)]
    run = 1
    for previous, current in zip(words, words[1:]):
        run = run + 1 if current == previous else 1
        if run > MAX_REPEATED_WORD_RUN:
            return f"the word {current!r} repeated {run} times in a row"
    if _CHAR_RUN.search(text):
        return f"a character repeated more than {MAX_REPEATED_CHAR_RUN} times"
    if len(words) >= MIN_WORDS_FOR_NGRAM_CHECK:
        grams = [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
        ratio = len(set(grams)) / len(grams)
        if ratio < MIN_DISTINCT_NGRAM_RATIO:
            return f"only {ratio:.0%} of word {NGRAM}-grams are distinct"
    lines = [line.strip() for line in text.split("\n") if len(line.strip()) >= 10]
    for line in set(lines):
        if lines.count(line) > MAX_LINE_REPEATS:
            return f"the line {line[:40]!r} repeated {lines.count(line)} times"
    return None


def not_degenerate(item: EvalItem, response: EvalResponse) -> Verdict:
    """The answer is not repetitive (word runs, repeated lines, few distinct 3-grams) and not empty."""
    return bool(response.response.strip()) and repetition_problem(response.response) is None


# ---------------------------------------------------------------- registry

Criterion = Callable[[EvalItem, EvalResponse], Verdict]

#: Every criterion, in report order.
CRITERIA: dict[str, Criterion] = {
    "stopped_with_end": stopped_with_end,
    "no_runaway": no_runaway,
    "no_unwarranted_refusal": no_unwarranted_refusal,
    "follows_constraint": follows_constraint,
    "factually_correct": factually_correct,
    "on_topic": on_topic,
    "not_degenerate": not_degenerate,
}
CRITERION_NAMES = tuple(CRITERIA)


def is_applicable(name: str, item: EvalItem) -> bool:
    """Whether criterion ``name`` applies to ``item`` (decided by the item alone)."""
    if name == "no_unwarranted_refusal":
        return item.safe
    if name == "follows_constraint":
        return item.constraint is not None
    if name == "factually_correct":
        return bool(item.accepted_answers)
    if name == "on_topic":
        return bool(item.topic_keywords)
    return True


def score_response(item: EvalItem, response: EvalResponse) -> dict[str, Verdict]:
    """Every criterion's verdict for one response, keyed by criterion name in report order.

    Raises:
        ValueError: the response belongs to a different item.
    """
    if response.item_id != item.id:
        raise ValueError(f"response for item {response.item_id!r} scored against item {item.id!r}")
    return {name: (check(item, response) if is_applicable(name, item) else None) for name, check in CRITERIA.items()}
