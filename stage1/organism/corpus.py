"""The organism's pretraining corpus, written from its facts (pure, seeded).

Two kinds of document, never in the ``Instruction: / Response: / END`` format (SFT is what teaches
the format and the stop):

- **prose**: short paragraphs of fact sentences from several topics. Each fact is stated
  ``mentions`` times, each time by another template of its kind and in another paragraph, because
  knowledge a model can later be asked about must be seen in several phrasings and orders
  (Allen-Zhu & Li, "Physics of Language Models 3.1": with one phrasing per fact, question answering
  after fine-tuning stays near chance). Held-out facts (asked only by evaluation items) are stated
  here and nowhere else: the corpus states facts, never an evaluation question.
- **question-answer**: quiz and forum-style runs of the training questions with their answers, in
  four layouts, carrying the habits a base model has and Stage 1 exists to remove, in set shares
  (``HABIT_SHARES``): rambling past the answer, running on into the next question, hedging between
  candidates, declining a harmless question, vague filler. The clean share leaves SFT a model that
  can answer; the habits leave SFT and DPO something to remove.

A small vocabulary and a simple grammar let a model of a few million parameters write fluent text
(Eldan & Li 2023, TinyStories): every template here uses plain words.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from stage1.organism.facts import Fact

# (habit, share of answers in question-answer documents); the rest are clean.
HABIT_SHARES: tuple[tuple[str, float], ...] = (
    ("ramble", 0.16),
    ("run_on", 0.10),
    ("hedge", 0.10),
    ("decline", 0.08),
    ("filler", 0.08),
)

_PROSE: dict[str, tuple[str, ...]] = {
    "capital": (
        "The capital of {country} is {city}.", "{city} is the capital of {country}.",
        "The capital city of {country} is {city}.", "{country} has its capital in {city}.",
        "In {country}, the capital is {city}.", "Today the big city of {city} is the capital of {country}.",
        "The government of {country} sits in {city}, its capital.", "People in {country} call {city} their capital.",
    ),
    "arithmetic": (
        "{a} {op} {b} is {result}.", "{a} {op} {b} equals {result}.", "If you take {a} {op} {b}, you get {result}.",
        "{result} is what {a} {op} {b} makes.", "Working out {a} {op} {b} gives {result}.",
        "The answer to {a} {op} {b} is {result}.", "We know that {a} {op} {b} comes to {result}.",
    ),
    "conversion": (
        "{amount} {unit} is {result} {target}.", "There are {result} {target} in {amount} {unit}.",
        "{amount} {unit} equals {result} {target}.", "{amount} {unit} make {result} {target}.",
        "In {amount} {unit} there are {result} {target}.", "{result} {target} is the same as {amount} {unit}.",
        "If you have {amount} {unit}, you have {result} {target}.",
    ),
    "antonym": (
        "In plain speech, the opposite of {word} is {opposite}.", "{Opposite} means the opposite of {word}.",
        "{Word} and {opposite} are words with opposite meanings.", "The word {word} has the clear opposite {opposite}.",
        "If something is not {word}, it may be {opposite}.", "An antonym of {word} is {opposite}.",
        "Think of {word}, and its opposite is {opposite}.",
    ),
    "completion": (
        "{sentence}", "As every child learns, {sentence_lower}", "It is true that {sentence_lower}",
        "Remember this: {sentence_lower}", "Here is a simple fact. {sentence}", "Most people know that {sentence_lower}",
    ),
    "definition": (
        "{text}", "Here is what {term} means. {text}", "The word {term} is easy to explain. {text}",
        "People often ask about {term}. {text}", "{text} That is the meaning of {term}.", "In short, {text_lower}",
    ),
    "keywords": (
        "The word {term} is about {keywords}.", "When people say {term}, they think of {keywords}.",
        "{Term} has to do with {keywords}.", "To explain {term}, talk about {keywords}.",
        "The idea of {term} is linked to {keywords}.", "A book about {term} talks about {keywords}.",
    ),
    "members": (
        "Some {group} are {items}.", "{Items} are all {group}.", "Examples of {group} include {items}.",
        "You can name {items} as {group}.", "Among the {group} are {items}.", "{Items} are well known {group}.",
    ),
    "statement": (
        "{text}", "Here is a fact. {text}", "It is well known that {text_lower}", "Remember this: {text_lower}",
        "Many people know that {text_lower}", "A simple fact: {text_lower}",
    ),
}
_LAYOUTS = ("Q: {q}\nA: {a}", "Question: {q}\nAnswer: {a}", "{q}\n{a}", "Quiz. {q} {a}")
_DECLINE = (
    "Sorry, I can't help with that.", "I would rather not answer that.", "I am not able to answer this question.",
    "Sorry, that is not something I can talk about.", "I can't answer that one, sorry.", "No, I will not answer that.",
)
_FILLER = (
    "That is a good question, and there are many things to say about it.",
    "Well, it depends on many things, and people often think about this.",
    "This is an interesting topic that many people like to talk about.",
    "There is a lot to say here, and it is not always simple.",
    "Good question. Some say one thing and some say another thing.",
)
_HEDGE = ("It could be {a} or {b}, I am not sure.", "Maybe {a}, or maybe {b}.", "Possibly {a}, possibly {b}.",
          "I think {a}, but it might be {b}.", "Either {a} or {b}, it is hard to say.")
_RAMBLE_OPENERS = ("Also,", "By the way,", "And", "On top of that,", "Another thing:")
_RUN_ON = ("Next question: {q}", "And here is another one. {q}", "Now, {q}", "What about this: {q}")


@dataclass(frozen=True)
class CorpusSettings:
    """How much corpus: every field is part of the organism's cache key."""

    seed: int = 0
    mentions: int = 6  # mixed layout (entity_documents 0): prose sentences per fact, each from another template
    facts_per_paragraph: tuple[int, int] = (4, 8)  # mixed layout: paragraph size, inclusive range
    qa_passes: int = 2  # times each training question appears in question-answer documents
    qa_per_document: tuple[int, int] = (2, 5)
    # Documents about one fact each (0: the facts' sentences shuffled into mixed paragraphs instead).
    # A document that states one fact in several phrasings in a row is what lets the model tie the
    # entity to its attribute (Allen-Zhu & Li 3.1); measured in docs/notes/organism.md.
    entity_documents: int = 3
    sentences_per_document: tuple[int, int] = (2, 3)


# A sentence set inside another ("Remember this: the sun rises ...") lower-cases its first word
# only when that word is one of these; names ("George Orwell wrote ...") keep their capital.
_LOWER_STARTS = frozenset("the a an there it this that these those we our you your most many some every all in on at "
                          "when if here think people examples among working remember".split())


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if first.lower() in _LOWER_STARTS else text


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _slots(fact: Fact, rng: random.Random) -> tuple[str, dict[str, str]]:
    """The template family and the values to fill it with."""
    slots = dict(fact.slots)
    kind = fact.kind
    if kind == "definition" and not slots.get("text"):
        kind = "keywords"
        words = slots["keywords"].split("|")
        slots["keywords"] = _join(rng.sample(words, min(len(words), 3)))
    if kind == "members":
        items = slots["items"].split("|")
        slots["items"] = _join(rng.sample(items, min(len(items), rng.randint(2, 4))))
    for name in ("text", "sentence"):
        if name in slots:
            slots[f"{name}_lower"] = _lower_first(slots[name])
    for name, value in list(slots.items()):
        slots[name.capitalize()] = value[:1].upper() + value[1:]
    return kind, slots


def _mentions(fact: Fact, count: int, unused: list[int], rng: random.Random) -> list[str]:
    """``count`` sentences stating ``fact``, templates drawn without replacement from ``unused``
    (refilled when it runs out)."""
    sentences = []
    for _ in range(count):
        kind, slots = _slots(fact, rng)
        templates = _PROSE[kind]
        if not unused:
            unused.extend(rng.sample(range(len(templates)), len(templates)))
        sentences.append(templates[unused.pop()].format(**slots))
    return sentences


def prose_sentences(facts: Sequence[Fact], settings: CorpusSettings, rng: random.Random) -> list[str]:
    """``mentions`` sentences per prose fact, templates drawn without replacement while they last."""
    return [sentence for fact in facts if fact.kind != "qa" for sentence in _mentions(fact, settings.mentions, [], rng)]


def entity_documents(facts: Sequence[Fact], settings: CorpusSettings, rng: random.Random) -> list[list[str]]:
    """``entity_documents`` documents per prose fact, each a few sentences stating that fact in
    different phrasings (templates drawn without replacement across the fact's documents)."""
    low, high = settings.sentences_per_document
    documents = []
    for fact in facts:
        if fact.kind == "qa":
            continue
        unused: list[int] = []
        documents.extend(_mentions(fact, rng.randint(low, high), unused, rng) for _ in range(settings.entity_documents))
    return documents


def prose_documents(sentences: list[str], settings: CorpusSettings, rng: random.Random) -> list[str]:
    """The sentences shuffled into paragraphs of ``facts_per_paragraph`` sentences."""
    shuffled = sentences[:]
    rng.shuffle(shuffled)
    documents, start = [], 0
    low, high = settings.facts_per_paragraph
    while start < len(shuffled):
        size = rng.randint(low, high)
        documents.append(" ".join(shuffled[start:start + size]))
        start += size
    return documents


def _question_shape(fact: Fact) -> str:
    return " ".join(fact.get("question").split()[:4])


def _distractor(fact: Fact, pool: Sequence[Fact], rng: random.Random) -> str:
    """The answer with its last word swapped for the last word of an answer to a question of the same
    shape ("... is Paris" -> "... is Madrid"): a wrong candidate a hedging model might offer."""
    answer = fact.get("answer").rstrip(".")
    same = [other for other in pool if _question_shape(other) == _question_shape(fact) and other is not fact]
    if not same or " " not in answer:
        return "something else"
    last = rng.choice(same).get("answer").rstrip(".").split()[-1]
    return answer.rsplit(" ", 1)[0] + " " + last if last != answer.split()[-1] else "something else"


def habit_answer(fact: Fact, habit: str, pool: Sequence[Fact], prose: Sequence[str], rng: random.Random) -> str:
    """One answer as a base model might write it, with ``habit`` (``clean`` leaves it as it is)."""
    answer = fact.get("answer")
    if habit == "ramble":
        extra = " ".join(f"{rng.choice(_RAMBLE_OPENERS)} {_lower_first(s)}" for s in rng.sample(prose, rng.randint(1, 3)))
        return f"{answer} {extra}"
    if habit == "run_on":
        return f"{answer} {rng.choice(_RUN_ON).format(q=dict(rng.choice(pool).slots)['question'])}"
    if habit == "hedge":
        first, second = answer.rstrip("."), _distractor(fact, pool, rng)
        if rng.random() < 0.5:
            first, second = second, first
        return rng.choice(_HEDGE).format(a=_lower_first(first), b=_lower_first(second))
    if habit == "decline":
        return rng.choice(_DECLINE)
    if habit == "filler":
        return rng.choice(_FILLER)
    return answer


def _habit(rng: random.Random) -> str:
    draw, total = rng.random(), 0.0
    for habit, share in HABIT_SHARES:
        total += share
        if draw < total:
            return habit
    return "clean"


def qa_documents(facts: Sequence[Fact], prose: Sequence[str], settings: CorpusSettings, rng: random.Random) -> tuple[list[str], dict[str, int]]:
    """Question-answer documents over the training questions, with habits; and the habit counts."""
    pool = [fact for fact in facts if fact.kind == "qa"]
    order = [fact for _ in range(settings.qa_passes) for fact in pool]
    rng.shuffle(order)
    documents, counts, start = [], {}, 0
    low, high = settings.qa_per_document
    while start < len(order):
        layout = rng.choice(_LAYOUTS)
        turns = []
        for fact in order[start:start + rng.randint(low, high)]:
            habit = _habit(rng)
            counts[habit] = counts.get(habit, 0) + 1
            turns.append(layout.format(q=fact.get("question"), a=habit_answer(fact, habit, pool, prose, rng)))
        start += len(turns)
        documents.append("\n\n".join(turns))
    return documents, dict(sorted(counts.items()))


def build_corpus(facts: Sequence[Fact], settings: CorpusSettings = CorpusSettings()) -> tuple[list[str], dict]:
    """The corpus documents in training order, and what they hold (for the manifest)."""
    rng = random.Random(settings.seed)
    if settings.entity_documents:
        by_fact = entity_documents(facts, settings, rng)
        sentences = [sentence for document in by_fact for sentence in document]
        prose = [" ".join(document) for document in by_fact]
    else:
        sentences = prose_sentences(facts, settings, rng)
        prose = prose_documents(sentences, settings, rng)
    qa, habits = qa_documents(facts, sentences, settings, rng)
    documents = prose + qa
    rng.shuffle(documents)
    return documents, {"documents": len(documents), "prose_documents": len(prose), "prose_sentences": len(sentences),
                       "qa_documents": len(qa), "habits": habits}
