"""How the content-free negatives are phrased so that no surface cue marks them.

A refusal or a vague answer that always opens with "I'm sorry" or "That is a great question", or
is always three times as long as the answer, can be told from the chosen answer without reading
either: a model trained on such pairs learns the opening and the length, not the content. Two
tools keep those cues away:

- ``subject_of`` reads the question's subject from the instruction ("What is the capital of
  France?" -> "The capital of France"), so a refusal or a vague answer can open as the chosen answer
  does ("The capital of France is something I can't help with."). The subject is the question's,
  never the answer's: an instruction does not hold its own answer.
- ``closest_to`` picks, among a few random numbered templates still under the repeat cap, the one
  whose length is nearest a target drawn around the chosen answer's length, so these kinds sit
  inside the length band as the others do.

Pure: strings and ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from functools import lru_cache

from stage1.core.text_keys import dedup_key

#: Constraint phrases that lead an instruction and are not part of its subject.
_CONSTRAINT_LEAD = re.compile(
    r"^(?:in (?:one|a single|a few|two|three) (?:words?|sentences?)|answer (?:with )?(?:yes or no|one word)|"
    r"give only the (?:number|answer)|briefly|quickly)\s*[:,]\s*",
    re.IGNORECASE,
)
_WHAT_IS = re.compile(r"^(?:what|which)\s+(?:is|are|was|were)\s+(?P<s>.{3,80}?)\s*\?$", re.IGNORECASE)
#: Other plain requests and the subject each names: (pattern, how the subject is written).
_SUBJECTS = (
    (re.compile(r"^how many\s+(?P<a>[\w ]{2,40}?)\s+(?:are|is)\s+(?:there\s+)?in\s+(?P<b>[\w ]{2,40}?)\s*\?$", re.I),
     "the {a} in {b}"),
    (re.compile(r"^define\s+(?P<a>[\w' -]{2,40}?)\s*\.?$", re.I), "the word {a}"),
    (re.compile(r"^write a (?:short )?sentence about\s+(?P<a>[\w' -]{2,40}?)\s*\.?$", re.I), "{a}"),
    (re.compile(r"^(?:in one sentence, )?explain (?P<a>why|what|how) (?P<b>[\w' -]{2,60}?)\s*\.?$", re.I), "{a} {b}"),
    (re.compile(r"^how do you\s+(?P<a>[\w' -]{2,60}?)\s*\?$", re.I), "how to {a}"),
)
_MAX_SUBJECT_WORDS = 10
#: A note in brackets after the request ("... of France? (item 12)") is not part of its subject.
_TRAILING_NOTE = re.compile(r"\s*\([^()\n]{1,40}\)$")


def subject_of(instruction: str) -> str | None:
    """The question's subject, capitalised ("The capital of France", "14 plus 31", "The number of
    inches in 3 feet", "The word galaxy", "Why the sky looks blue"), or None when the instruction
    is none of the plain questions and requests read here."""
    text = _CONSTRAINT_LEAD.sub("", _TRAILING_NOTE.sub("", " ".join(instruction.split())))
    match = _WHAT_IS.match(text)
    subject = match.group("s") if match else None
    for pattern, form in _SUBJECTS if subject is None else ():
        match = pattern.match(text)
        if match:
            subject = form.format(**match.groupdict())
            break
    if subject is None or len(subject.split()) > _MAX_SUBJECT_WORDS or not subject[0].isalnum():
        return None
    return subject[0].upper() + subject[1:]


#: Question and request words that lead an instruction before its topic ("List three", "Answer yes or no: Is").
_REQUEST_WORDS = re.compile(
    r"^(?:(?:what|which|who|how|why|when|where|many|much|do|does|did|you|is|are|was|were|can|list|name|give|"
    r"write|tell|me|describe|explain|define|complete|state|answer|yes|or|no|in|one|a|an|the|short|sentence|word|only|"
    r"number|exactly|two|three|four|five|about|please)\b[\s,:]*)+",
    re.IGNORECASE,
)


def topic_of(instruction: str) -> str | None:
    """What the instruction is about, its request words dropped ("Answer yes or no: Is Paris in
    France?" -> "Paris in France", "List three fruits." -> "Fruits"), or None when nothing or too
    much is left. Item-specific words, for an opening no template repeats across items."""
    text = _TRAILING_NOTE.sub("", " ".join(instruction.split()))
    topic = _REQUEST_WORDS.sub("", text).rstrip(" .?!")
    if not topic or len(topic.split()) > _MAX_SUBJECT_WORDS or not topic[0].isalnum():
        return None
    return topic[0].upper() + topic[1:]


_COMPLETE = re.compile(r"^complete (?:the|this) sentence:\s*(?P<f>[^\n]{3,80}?)\s*$", re.IGNORECASE)


def fragment_of(instruction: str) -> str | None:
    """The start of the sentence a "Complete the sentence: ..." instruction asks to complete, which
    the chosen answer opens with ("A week has"), or None."""
    match = _COMPLETE.match(_TRAILING_NOTE.sub("", " ".join(instruction.split())))
    if not match or len(match.group("f").split()) > _MAX_SUBJECT_WORDS or not match.group("f")[0].isalnum():
        return None
    return match.group("f")


#: Words an answer may open with that say nothing the instruction does not ("There are", "It is").
CARRIER_WORDS = frozenset("a an the there it its is are was were of in on at to for and this that these those".split())
#: Words that answer a question by themselves: never part of a lead, even when the instruction has them.
_ANSWER_WORDS = frozenset({"yes", "no", "not", "never", "true", "false"})
_SENTENCE_END = (".", "?", "!", ":", ";")
_ARTICLES = frozenset({"a", "an", "the"})


def answer_free_prefix(instruction: str, response: str) -> str | None:
    """The chosen answer's opening words up to the first one the instruction does not hold (carrier
    words such as "there", "is" aside): "There are" of "There are 240 seconds in 4 minutes.", "The
    opposite of hot is" of "The opposite of hot is cold.". Within the first sentence, at most
    ``_MAX_SUBJECT_WORDS``, at least two words and at least one left after it; None otherwise. A
    negative that opens with it opens as the chosen answer does, and holds none of its answer."""
    held = set(dedup_key(instruction).split())
    words = response.split("\n", 1)[0].split()
    taken = 0
    for raw in words[: min(_MAX_SUBJECT_WORDS, len(words) - 1)]:
        key = dedup_key(raw)
        if not key or " " in key or key in _ANSWER_WORDS or (key not in held and key not in CARRIER_WORDS):
            break
        taken += 1
        if raw.endswith(_SENTENCE_END):
            break
    while taken and dedup_key(words[taken - 1]) in _ARTICLES:
        taken -= 1  # "A galaxy is", not "A galaxy is a": what follows need not be a noun
    prefix = " ".join(words[:taken]).rstrip(",;:.?!")
    return prefix if taken >= 2 and prefix[0].isalnum() else None


def target_words(chosen_words: int, rng: random.Random, lean: int = 0) -> int:
    """A length to aim for: the chosen answer's own, so that neither "the longer one" nor the length
    itself tells the two apart (a length-bucket feature would, even with the longer side balanced);
    one word shorter (``lean`` -1) or longer (+1) half the time when the kind's rejecteds have been
    the longer or the shorter side so far (``LengthBand.lean``)."""
    step = lean if lean and rng.random() < 0.5 else 0
    return max(1, chosen_words + step)


def closest_to(
    target: int, draw: Callable[[], int | None], words: Callable[[int], int], tries: int
) -> int | None:
    """Of up to ``tries`` numbers from ``draw`` (None: nothing left to draw), the one whose
    ``words`` is nearest ``target`` (the first on a tie), or None when none was drawn."""
    best, best_gap = None, None
    for _ in range(tries):
        index = draw()
        if index is None:
            continue
        gap = abs(words(index) - target)
        if best_gap is None or gap < best_gap:
            best, best_gap = index, gap
            if gap == 0:
                break
    return best


@lru_cache(maxsize=16)
def _combinations_by_words(cores: tuple[str, ...], extras: tuple[str, ...]) -> dict[int, list[tuple[int, int]]]:
    """(core, extra) numbers by their words beside the subject's (the ``{Subject}`` word left out)."""
    table: dict[int, list[tuple[int, int]]] = {}
    for i, core in enumerate(cores):
        for j, extra in enumerate(extras):
            table.setdefault(len(core.split()) - 1 + len(extra.split()), []).append((i, j))
    return table


def subject_led(cores: tuple[str, ...], extras: tuple[str, ...], subject: str, target: int, rng: random.Random) -> str:
    """A sentence of ``cores`` led by ``subject``, with one of ``extras`` after it (``""`` among them
    for none), drawn from the combinations whose length is nearest ``target``."""
    from stage1.negatives.templates import join_sentences, with_subject

    table = _combinations_by_words(cores, extras)
    want = target - len(subject.split())
    nearest = min(abs(words - want) for words in table)
    options = [combination for words, found in sorted(table.items()) if abs(words - want) == nearest for combination in found]
    core, extra = options[rng.randrange(len(options))]
    return join_sentences(with_subject(cores[core], subject), extras[extra])
