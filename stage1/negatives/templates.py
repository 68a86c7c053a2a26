"""Text pieces for the templated negatives, combined at random so no one string dominates.

Refusals combine an opener, a declining sentence and an optional closer (8 x 10 x 7 numbered
template-only strings, plus sentences quoting the instruction); vague answers combine an opener,
two or three fillers and a closer (69,696 numbered strings). Numbering the strings lets the maker
count uses in a fixed-size array: the repeat cap is exact and its memory does not grow.
The declining sentences are written here, apart from the evaluation's refusal detector
(``criteria``), which has its own broader phrase lists: a detector copied from these sentences
would measure this generator, not refusals (a test checks the lists share no phrase). Compliant
openings (for requests that should be declined) combine an opener and a sentence that sets about
the task without carrying it out (6 x 8 numbered strings). Pieces are written with single periods and proper capitals:
a surface cue such as a doubled period would let a model tell rejected from chosen without
reading the content.
"""

from __future__ import annotations

import random
from array import array

from stage1.core.records import SFTExample

REFUSAL_OPENERS = (
    "", "", "", "I'm sorry, but", "Unfortunately,", "I apologize, but", "Sorry,", "I'm afraid", "Regrettably,",
    "Alas,", "Forgive me, but", "With respect,", "Right now,", "Hmm,", "Thanks for asking, but", "Sadly,",
    "To be clear,", "Well,", "No,", "Please understand,", "Here,",
)
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
    "I cannot answer.",
    "I won't reply to that.",
    "I can't assist.",
    "we cannot help with this one.",
    "that question I will not answer.",
    "I decline to answer that.",
    "I cannot respond to that.",
    "I would rather not answer that.",
    "it is not something I can answer.",
    "I am not in a position to answer.",
)
#: Declining sentences that quote the instruction: as varied as the instructions (capped like every
#: rejected string, which matters only for instructions that repeat).
QUOTING_REFUSAL_CORES = (
    'I can\'t help with "{instruction}".',
    'I am not able to answer "{instruction}".',
    'I cannot assist with a request like "{instruction}".',
)
#: Declining sentences led by the question's subject ({subject}, from ``phrasing.subject_of``), so
#: they open the way the chosen answers do ("The capital of France ...") instead of with a marker.
SUBJECT_REFUSAL_CORES = (
    "{Subject}? I can't.",
    "{Subject}? I won't.",
    "{Subject}? I can't answer.",
    "{Subject}: I won't answer.",
    "{Subject}? I cannot help.",
    "{Subject} is something I can't help with.",
    "{Subject}: I am unable to answer that.",
    "{Subject}? I won't answer that.",
    "{Subject} is a topic I have to decline to discuss.",
    "{Subject} is a question I can't answer here.",
    "{Subject}? I would rather not answer that.",
    "{Subject}: I am not able to help.",
    "{Subject}? I can't help.",
    "{Subject}, sadly, is not something I can help with. I cannot answer.",
)
#: A word that breaks off the chosen answer's own opening before a refusal or a vague answer goes on
#: ("There are, well, ..."): drawn apart from what follows, so no third word marks the kind.
ASIDES = (
    "well", "hmm", "no", "sorry", "actually", "frankly", "alas", "honestly", "um", "oh", "okay", "right",
    "look", "so", "now", "see", "sadly", "really", "listen", "anyway", "truly", "admittedly", "unfortunately",
    "regrettably", "plainly", "simply", "again", "still", "then", "indeed", "naturally", "certainly", "mind you",
    "you see", "as it happens", "to be honest", "in fact", "at this point", "for my part", "if I may",
)
#: Refusals that break off the chosen answer's own opening ("There are, well, I can't answer that.",
#: "A week has, hmm, I will not continue."): the opening words are the chosen's, the rest declines.
FRAGMENT_REFUSAL_CORES = tuple(
    f"{{Subject}}, {aside}, {rest}"
    for aside in ASIDES
    for rest in (
        "I can't answer that.",
        "I am not able to complete this.",
        "I will not continue.",
        "I would rather not continue.",
        "I can't help with that.",
        "I won't answer.",
        "I must decline to answer.",
        "I cannot help with this.",
        "I cannot respond to that.",
        "I'm not able to answer.",
        "I have to decline this one.",
        "I won't reply to that.",
    )
)
REFUSAL_CLOSERS = (
    "",
    "",
    "",
    "Please ask me something else.",
    "Perhaps another source can help.",
    "Is there anything else I can do for you?",
    "I hope you understand.",
    "You may want to consult a reliable reference.",
    "Let me know if there is something else you need.",
    "Sorry.",
    "Try another question.",
)

COMPLIED_OPENERS = ("Sure.", "Of course.", "Certainly.", "Happy to help.", "No problem.", "Absolutely.")
COMPLIED_BODIES = (
    "Here is how you can do it, step by step.",
    "Here is exactly what you asked for.",
    "Let me walk you through the whole process.",
    "Here are the details you need to get started.",
    "I will explain each step so you can do it yourself.",
    "Below is a complete guide to doing just that.",
    "This is straightforward, and here is the method.",
    "Follow these instructions carefully and it will work.",
)

#: Vague answers say nothing about the question; their defect is vagueness, not length: the pieces
#: run from two words ("It depends.") to long sentences, and the maker picks combinations near the
#: chosen answer's length. Openers start the ways answers start (The, It, There, A, ...) as well.
VAGUE_OPENERS = (
    "", "", "", "", "Good question.", "Well,", "Honestly,", "In short,", "Broadly speaking,", "Hmm.",
    "That is a great question.", "There are many ways to look at this.", "It is a question with a long history.",
    "People have thought about this in many ways.", "Let me share a few thoughts on this.", "To put it simply,",
    "The short answer:", "As a rule,", "All in all,", "In a way,", "Generally speaking,",
)
VAGUE_FILLERS = (
    "it depends.",
    "hard to say.",
    "that varies.",
    "it could go either way.",
    "the answer depends on the situation.",
    "there is no single answer here.",
    "a lot depends on context.",
    "it really depends on a number of different factors.",
    "different people might see it in different ways.",
    "context matters a great deal here.",
    "some would say one thing, while others would say something else entirely.",
    "it is important to consider all of the relevant details.",
    "there is no simple way to sum it up.",
    "much depends on the circumstances and the perspective you take.",
    "experts have discussed matters like this for a long time.",
    "various considerations come into play.",
    "a lot of it comes down to how you frame things.",
    "opinions on this tend to vary quite a bit.",
    "the details matter.",
    "many things play a part.",
)
#: Vague sentences led by the question's subject, so they open as the chosen answers do.
SUBJECT_VAGUE_CORES = (
    "{Subject} varies.",
    "{Subject}? It depends.",
    "{Subject}: hard to say.",
    "{Subject} is unclear.",
    "{Subject} depends on many factors.",
    "{Subject} is hard to pin down.",
    "{Subject} varies with context.",
    "{Subject} is open to interpretation.",
    "{Subject} is a matter of perspective.",
    "{Subject} is not easy to sum up.",
    "{Subject} can be seen in different ways.",
    "{Subject} is something people disagree about.",
)
#: Vague answers that trail off after the chosen answer's own opening ("There are, well, it
#: depends."): they commit to nothing.
FRAGMENT_VAGUE_CORES = tuple(
    f"{{Subject}}, {aside}, {rest}"
    for aside in ASIDES
    for rest in (
        "it depends.",
        "hard to say.",
        "that varies.",
        "it could go either way.",
        "many things, depending on how you see it.",
        "something or other.",
        "different things to different people.",
        "it depends on the situation.",
        "that is open to interpretation.",
        "it is a matter of perspective.",
        "it is hard to pin down.",
        "it varies with context.",
        "people disagree about that.",
        "it is not easy to say.",
    )
)
VAGUE_CLOSERS = (
    "",
    "",
    "",
    "In the end, it is worth thinking about carefully.",
    "Ultimately, the answer may vary from case to case.",
    "Hopefully this gives you something to think about.",
    "All things considered, it is a nuanced matter.",
    "So there is no single way to put it.",
    "It is worth keeping all of this in mind.",
    "That is all there is to it.",
    "Make of that what you will.",
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
    """Pieces joined by spaces, each sentence start capitalised (fillers are written in lower case so
    they can follow an opener that ends in a comma)."""
    text = ""
    for part in parts:
        if not part:
            continue
        if not text or text[-1] in ".?!":
            part = part[0].upper() + part[1:]
        text = f"{text} {part}" if text else part
    return text


join_sentences = _join


def _mixed_radix(index: int, sizes: tuple[int, ...]) -> list[int]:
    digits = []
    for size in reversed(sizes):
        index, digit = divmod(index, size)
        digits.append(digit)
    return digits[::-1]


def _words(pieces: tuple[str, ...]) -> list[int]:
    return [len(piece.split()) for piece in pieces]


_REFUSAL_SIZES = (len(REFUSAL_OPENERS), len(REFUSAL_CORES), len(REFUSAL_CLOSERS))
_REFUSAL_WORDS = (_words(REFUSAL_OPENERS), _words(REFUSAL_CORES), _words(REFUSAL_CLOSERS))
#: Number of distinct template-only refusals; ``refusal_from_index`` numbers them 0..REFUSAL_SPACE-1.
REFUSAL_SPACE = _REFUSAL_SIZES[0] * _REFUSAL_SIZES[1] * _REFUSAL_SIZES[2]


def refusal_from_index(index: int) -> str:
    """The template-only refusal number ``index`` (distinct indices give distinct strings)."""
    opener, core, closer = _mixed_radix(index, _REFUSAL_SIZES)
    return _join(REFUSAL_OPENERS[opener], REFUSAL_CORES[core], REFUSAL_CLOSERS[closer])


def _words_by_index(words: tuple[list[int], ...]) -> array:
    """Words of every numbered string, in index order (the mixed radix's last digit varies fastest)."""
    first, second, third = words
    return array("B", (a + b + c for a in first for b in second for c in third))


_REFUSAL_WORDS_BY_INDEX = _words_by_index(_REFUSAL_WORDS)
#: Words of ``refusal_from_index(index)``, without building it.
refusal_words = _REFUSAL_WORDS_BY_INDEX.__getitem__


def quoting_refusal(example: SFTExample, rng: random.Random) -> str:
    """A refusal that quotes the instruction (so it is unique to the instruction)."""
    quoted = example.instruction.replace("\n", " ").strip().rstrip(".")
    core = rng.choice(QUOTING_REFUSAL_CORES).replace("{instruction}", quoted)
    return _join(rng.choice(REFUSAL_OPENERS), core, rng.choice(REFUSAL_CLOSERS))


def with_subject(template: str, subject: str) -> str:
    """``template`` with ``{Subject}`` (capitalised) and ``{subject}`` (first letter lowered unless
    the subject opens with a name or a number) filled in."""
    lowered = subject[0].lower() + subject[1:] if subject.split()[0] in _ARTICLES else subject
    return template.replace("{Subject}", subject[0].upper() + subject[1:]).replace("{subject}", lowered)


_ARTICLES = ("The", "A", "An", "the", "a", "an")


_COMPLIED_SIZES = (len(COMPLIED_OPENERS), len(COMPLIED_BODIES))
#: Number of distinct compliant openings; ``complied_from_index`` numbers them 0..COMPLIED_SPACE-1.
COMPLIED_SPACE = _COMPLIED_SIZES[0] * _COMPLIED_SIZES[1]


def complied_from_index(index: int) -> str:
    """Compliant opening number ``index``: agrees to a request that should have been declined."""
    opener, body = _mixed_radix(index, _COMPLIED_SIZES)
    return _join(COMPLIED_OPENERS[opener], COMPLIED_BODIES[body])


# Vague answers: opener, then one or two distinct fillers in order, then a closer.
_FILLER_CHOICES = [(a,) for a in range(len(VAGUE_FILLERS))] + [
    (a, b) for a in range(len(VAGUE_FILLERS)) for b in range(len(VAGUE_FILLERS)) if a != b
]
_FILLER_WORDS = _words(VAGUE_FILLERS)
_VAGUE_SIZES = (len(VAGUE_OPENERS), len(_FILLER_CHOICES), len(VAGUE_CLOSERS))
_VAGUE_WORDS = (_words(VAGUE_OPENERS), [sum(_FILLER_WORDS[i] for i in c) for c in _FILLER_CHOICES], _words(VAGUE_CLOSERS))
#: Number of distinct vague answers; ``vague_from_index`` numbers them 0..VAGUE_SPACE-1.
VAGUE_SPACE = _VAGUE_SIZES[0] * _VAGUE_SIZES[1] * _VAGUE_SIZES[2]


def vague_from_index(index: int) -> str:
    """Vague answer number ``index``: one to four sentences that say nothing about the question."""
    opener, fillers, closer = _mixed_radix(index, _VAGUE_SIZES)
    middle = [VAGUE_FILLERS[i] for i in _FILLER_CHOICES[fillers]]
    return _join(VAGUE_OPENERS[opener], *middle, VAGUE_CLOSERS[closer])


_VAGUE_WORDS_BY_INDEX = _words_by_index(_VAGUE_WORDS)
#: Words of ``vague_from_index(index)``, without building it.
vague_words = _VAGUE_WORDS_BY_INDEX.__getitem__
