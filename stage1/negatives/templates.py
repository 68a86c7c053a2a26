"""Text pieces for the templated negatives, combined at random so no one string dominates.

Refusals combine an opener, a declining sentence and an optional closer (8 x 10 x 7 numbered
template-only strings, plus sentences quoting the instruction); vague answers combine an opener,
two or three fillers and a closer (69,696 numbered strings). Numbering the strings lets the maker
count uses in a fixed-size array: the repeat cap is exact and its memory does not grow.
Every declining sentence is one the evaluation's refusal detector recognises, so the pairs teach
exactly what evaluation measures. Pieces are written with single periods and proper capitals:
a surface cue such as a doubled period would let a model tell rejected from chosen without
reading the content.
"""

from __future__ import annotations

import random

from stage1.core.records import SFTExample

REFUSAL_OPENERS = ("", "I'm sorry, but", "Unfortunately,", "I apologize, but", "Sorry,", "I'm afraid", "Regrettably,", "Honestly,")
REFUSAL_CORES = (
    "I can't help with that request.",
    "I am not able to answer this question.",
    "I cannot provide an answer to that.",
    "I will not answer this question.",
    "I'm unable to respond to this request.",
    "I have to decline this request.",
    "I can't assist with questions like this.",
    "this is not something I can help with.",
    "I'm not able to provide that information.",
    "I must decline to answer.",
)
#: Declining sentences that quote the instruction: as varied as the instructions (capped like every
#: rejected string, which matters only for instructions that repeat).
QUOTING_REFUSAL_CORES = (
    'I can\'t help with "{instruction}".',
    'I am not able to answer "{instruction}".',
    'I cannot assist with a request like "{instruction}".',
)
REFUSAL_CLOSERS = (
    "",
    "Please ask me something else.",
    "Perhaps another source can help.",
    "Is there anything else I can do for you?",
    "I hope you understand.",
    "You may want to consult a reliable reference.",
    "Let me know if there is something else you need.",
)

VAGUE_OPENERS = (
    "That is a great question.",
    "This is an interesting topic that many people wonder about.",
    "There are many ways to look at this.",
    "It is a question with a long history.",
    "Good question, and not an easy one.",
    "People have thought about this in many ways.",
    "This is something that comes up quite often.",
    "Let me share a few thoughts on this.",
)
VAGUE_FILLERS = (
    "It really depends on a number of different factors.",
    "Different people might see it in different ways.",
    "Context matters a great deal here.",
    "Some would say one thing, while others would say something else entirely.",
    "It is important to consider all of the relevant details.",
    "There is no simple way to sum it up.",
    "Much depends on the circumstances and the perspective you take.",
    "Experts have discussed matters like this for a long time.",
    "Various considerations come into play, and they can pull in different directions.",
    "A lot of it comes down to how you frame things.",
    "Many aspects are involved, and each of them deserves attention.",
    "Opinions on this tend to vary quite a bit.",
)
VAGUE_CLOSERS = (
    "In the end, it is worth thinking about carefully.",
    "Ultimately, the answer may vary from case to case.",
    "Hopefully this gives you something to think about.",
    "All things considered, it is a nuanced matter.",
    "So there is no single way to put it.",
    "It is worth keeping all of this in mind.",
)

#: Follow-up instructions for a runaway when no other example is at hand.
RUNAWAY_FOLLOW_UPS = (
    "Can you tell me more?",
    "What else should I know?",
    "Give another example.",
    "Explain that in more detail.",
    "What is the next step?",
)

#: Extra sentences that break a one-sentence constraint.
EXTRA_SENTENCES = (
    "This is worth remembering.",
    "Many people find this useful to know.",
    "There is more that could be said about it.",
    "It is a common question.",
    "That is the short version.",
)

#: Sentences that wrap a one-word answer ({answer} is the chosen answer without end punctuation).
ONE_WORD_WRAPPERS = (
    "The answer to that is {answer}, as far as I can tell.",
    "I would say that the answer is {answer}.",
    "Well, if I had to put it in a sentence, it would be {answer}.",
    "My answer here is {answer}, and I am fairly sure of it.",
)

#: Sentences that wrap a number so the answer is no longer only a number.
NUMBER_WRAPPERS = (
    "The number you are looking for is {answer}.",
    "After working it out, I get {answer} as the result.",
    "It comes to {answer} in total.",
)

#: Answers to a yes/no question that never say yes or no.
AFFIRMATIONS = ("That is correct.", "That is right.", "Indeed it is.")
DENIALS = ("That is not correct.", "That is not the case.", "Not at all.")


def _join(*parts: str) -> str:
    text = " ".join(part for part in parts if part)
    return text[0].upper() + text[1:] if text else text


def _mixed_radix(index: int, sizes: tuple[int, ...]) -> list[int]:
    digits = []
    for size in reversed(sizes):
        index, digit = divmod(index, size)
        digits.append(digit)
    return digits[::-1]


_REFUSAL_SIZES = (len(REFUSAL_OPENERS), len(REFUSAL_CORES), len(REFUSAL_CLOSERS))
#: Number of distinct template-only refusals; ``refusal_from_index`` numbers them 0..REFUSAL_SPACE-1.
REFUSAL_SPACE = _REFUSAL_SIZES[0] * _REFUSAL_SIZES[1] * _REFUSAL_SIZES[2]


def refusal_from_index(index: int) -> str:
    """The template-only refusal number ``index`` (distinct indices give distinct strings)."""
    opener, core, closer = _mixed_radix(index, _REFUSAL_SIZES)
    return _join(REFUSAL_OPENERS[opener], REFUSAL_CORES[core], REFUSAL_CLOSERS[closer])


def quoting_refusal(example: SFTExample, rng: random.Random) -> str:
    """A refusal that quotes the instruction (so it is unique to the instruction)."""
    quoted = example.instruction.replace("\n", " ").strip().rstrip(".")
    core = rng.choice(QUOTING_REFUSAL_CORES).replace("{instruction}", quoted)
    return _join(rng.choice(REFUSAL_OPENERS), core, rng.choice(REFUSAL_CLOSERS))


# Vague answers: opener, then two or three distinct fillers in order, then a closer.
_PAIRS = [(a, b) for a in range(len(VAGUE_FILLERS)) for b in range(len(VAGUE_FILLERS)) if a != b]
_TRIPLES = [(a, b, c) for a, b in _PAIRS for c in range(len(VAGUE_FILLERS)) if c not in (a, b)]
_FILLER_CHOICES = _PAIRS + _TRIPLES
_VAGUE_SIZES = (len(VAGUE_OPENERS), len(_FILLER_CHOICES), len(VAGUE_CLOSERS))
#: Number of distinct vague answers; ``vague_from_index`` numbers them 0..VAGUE_SPACE-1.
VAGUE_SPACE = _VAGUE_SIZES[0] * _VAGUE_SIZES[1] * _VAGUE_SIZES[2]


def vague_from_index(index: int) -> str:
    """Vague answer number ``index``: three to five sentences that say nothing about the question."""
    opener, fillers, closer = _mixed_radix(index, _VAGUE_SIZES)
    middle = [VAGUE_FILLERS[i] for i in _FILLER_CHOICES[fillers]]
    return _join(VAGUE_OPENERS[opener], *middle, VAGUE_CLOSERS[closer])
