"""What a response commits to: an accepted answer (``commits_to_answer``) or a yes/no
(``yes_no_answer``). Used by ``factually_correct`` (``stage1.core.criteria``).

Scoring the reference anywhere in the text rewards hedging ("Rome or Milan") and retraction ("not
Rome; Milan"), which DPO finds quickly; these functions read the answer the response stands by.

Pure: strings only. Every pattern is compiled once, at import; per-answer work is cached.
"""

from __future__ import annotations

import re
from functools import lru_cache

from stage1.core.criteria_form import EDGE_PUNCTUATION
from stage1.core.criteria_text import CLAUSE_WORDS, digits_for_number_words, inflections, tokens, words_of
from stage1.core.refusals import fold_for_refusal, is_refusal

#: Words that negate the answer named within the next few words ("not Rome", "isn't 33", "never").
NEGATORS = frozenset({"not", "no", "never", "neither", "nor", "none", "nothing", "cannot"})
NEGATION_WINDOW = 3  # words before a mention in which a negator negates it
#: "Rome is not the capital", "33 is not correct": a denial right after the mention negates it.
_DENIED_AFTER = re.compile(r"^(?:is|was|are|were) (?:not|never) (?:the|correct|right|it|true|a|an)\b|^(?:is|was) (?:wrong|incorrect)\b")
MAX_CANDIDATE_WORDS = 3  # a bare candidate in a series ("New York", "the Nile") is at most this long
#: Words that offer a candidate as one possibility ("Possibly Rome, possibly Milan."). Alone after
#: an answer, the leaning ones qualify it ("Rome, probably." commits); the others leave it open
#: ("Rome, maybe." does not), as they leave a yes/no open (``UNDECIDED``).
LEANING_WORDS = frozenset({"probably", "likely"})
HEDGE_WORDS = frozenset({"possibly", "perhaps", "maybe"}) | LEANING_WORDS
#: Sentence openings that take back what came before ("Rome. Actually, Milan.", "Rome. Or Milan.").
RETRACTION_OPENERS = (
    "actually", "no", "wait", "correction", "i mean", "or", "or rather", "rather", "sorry", "on second thought",
    "scratch that", "i was wrong", "my mistake", "oops", "maybe", "perhaps", "possibly", "probably",
)
_RETRACTION = re.compile("(?:" + "|".join(re.escape(opener) for opener in RETRACTION_OPENERS) + r")\b")
MAX_RETRACTION_WORDS = 6  # a retracting sentence is short: "Actually, it is Milan."
_NOT_RETRACTIONS = ("no doubt", "no question", "no wonder", "sorry to")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_SERIES_SPLIT = re.compile(
    r"(\s*(?:,(?=\s|$)|;|/|\(|\))\s*(?:(?:and|or|nor|either)\s+)?|\s+(?:and|or|nor)\s+)", re.IGNORECASE
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+")
#: A sum restated in the answer names its operands, not its result: "80 minus 80 is 108." does not
#: answer 80, nor "Taking 22 away from 24 leaves 24." 22. Each such expression reads as "it" before
#: answers are sought (after number words are read as digits), so only what it is said to make counts.
_NUMBER = r"\d+(?:\.\d+)?"
_EXPRESSION = re.compile(
    rf"\b{_NUMBER}(?: (?:plus|minus|times|multiplied by|divided by) {_NUMBER})+\b"
    rf"|\b(?:taking|take|subtracting|subtract) {_NUMBER} (?:away )?from {_NUMBER}\b"
    rf"|\b(?:adding|add) {_NUMBER} to {_NUMBER}\b|\b{_NUMBER} groups of {_NUMBER}\b",
    re.IGNORECASE,
)


Answers = tuple[frozenset[str], tuple[tuple[str, ...], ...]]  # one-word forms, multi-word token sequences


@lru_cache(maxsize=4096)
def answer_forms(accepted: tuple[str, ...]) -> Answers:
    """What names an accepted answer: each answer's tokens with number words in digits, and a
    one-word answer in its regular inflections (``criteria_text.inflections``)."""
    singles: set[str] = set()
    multis: set[tuple[str, ...]] = set()
    for answer in accepted:
        needle = tuple(tokens(digits_for_number_words(answer)))
        if len(needle) == 1:
            singles |= inflections(needle[0])
        elif needle:
            multis.add(needle)
    return frozenset(singles), tuple(sorted(multis))


def _spans(words: list[str], answers: Answers) -> list[tuple[int, int]]:
    singles, multis = answers
    found = [(i, i + 1) for i, word in enumerate(words) if word in singles]
    for needle in multis:
        width = len(needle)
        found += [(i, i + width) for i in range(len(words) - width + 1) if tuple(words[i : i + width]) == needle]
    return found


def _holds_answer(words: list[str], answers: Answers) -> bool:
    return bool(_spans(words, answers))


def _is_candidate(words: list[str]) -> bool:
    """A bare noun-phrase-like part: short and without clause words ("Milan", "the Nile")."""
    return 0 < len(words) <= MAX_CANDIDATE_WORDS and not CLAUSE_WORDS.intersection(words)


def _sentence_commits(sentence: str, answers: Answers) -> tuple[bool, bool]:
    """(mentions an accepted answer, commits to it) for one sentence.

    The sentence is split into parts at commas, semicolons, slashes, brackets, 'and', 'or' and
    'nor'. A mention is negated when a negator comes within ``NEGATION_WINDOW`` words before it in
    its part, when a denial follows it ("is not the", "is wrong"), or when its part follows 'nor';
    it is hedged when its part belongs to a series of competing candidates (``_hedged``).
    """
    pieces = _SERIES_SPLIT.split(sentence)
    parts = [tokens(piece) for piece in pieces[0::2]]
    separators = [piece.strip().casefold() for piece in pieces[1::2]]
    mentioned = committed = False
    for index, part in enumerate(parts):
        spans = _spans(part, answers)
        if not spans:
            continue
        mentioned = True
        after_nor = index > 0 and "nor" in separators[index - 1]
        negated = after_nor or all(
            NEGATORS.intersection(part[max(0, start - NEGATION_WINDOW) : start]) or _DENIED_AFTER.match(" ".join(part[end:]))
            for start, end in spans
        )
        # A part that is not itself a bare candidate joins a series only through its last words
        # ("It is Rome, Milan or Naples"; not "The answer is 4 because two and two make").
        at_edge = _is_candidate(part) or any(end == len(part) for _, end in spans)
        if negated or (at_edge and _hedged(parts, separators, index, answers)):
            continue
        committed = True
    return mentioned, committed


def _hedged(parts: list[list[str]], separators: list[str], index: int, answers: Answers) -> bool:
    """Whether part ``index`` is one member of a series of competing candidates.

    A series of bare candidates (each ``_is_candidate``) is a list of alternatives when joined by
    'or' or '/', when it has three or more members, two joined by 'and', or a member offered as a
    possibility ("Possibly Rome, possibly Milan."). It hedges when another member is a rival: it
    holds no accepted answer and is more than a hedge word ("Kyiv (or Kiev)" names one answer
    twice; "Rome, probably." qualifies the answer and names no rival; "Rome, maybe." leaves it open). A name in another script is
    another word: "Moscow or Москва" offers a rival unless an alias spells it so.
    """
    left = index
    while left > 0 and _is_candidate(parts[left]):
        left -= 1
    right = index
    while right + 1 < len(parts) and _is_candidate(parts[right + 1]):
        right += 1
    if right == left:
        return False
    joins = separators[left:right]
    members = parts[left : right + 1]
    disjunction = any(word in join for join in joins for word in ("or", "/", "nor"))
    offered = any(HEDGE_WORDS.intersection(member) for member in members)
    is_list = disjunction or offered or right - left >= 2 or any("and" in join for join in joins)
    rivals = [part for position, part in enumerate(members, start=left)
              if position != index and not _holds_answer(part, answers) and not LEANING_WORDS.issuperset(part)]
    return is_list and bool(rivals)


def _retracts(sentence: str) -> bool:
    folded = fold_for_refusal(sentence).strip(EDGE_PUNCTUATION)
    if any(folded.startswith(phrase) for phrase in _NOT_RETRACTIONS):
        return False
    words = words_of(folded)
    if LEANING_WORDS.issuperset(word.casefold() for word in words):
        return False  # "Rome. Probably." qualifies the answer; "Rome. Probably Milan." takes it back
    return _RETRACTION.match(folded) is not None and len(words) <= MAX_RETRACTION_WORDS


def _lists_rivals(text: str, answers: Answers) -> bool:
    """A bulleted or numbered list of bare candidates, one holding the answer and another not."""
    lines = [line for line in text.split("\n") if _LIST_MARKER.match(line)]
    if len(lines) < 2:
        return False
    bare = [item for item in (tokens(_LIST_MARKER.sub("", line)) for line in lines) if _is_candidate(item)]
    return any(_holds_answer(item, answers) for item in bare) and any(not _holds_answer(item, answers) for item in bare)


def commits_to_answer(text: str, accepted: tuple[str, ...]) -> bool:
    """True when ``text`` commits to one of ``accepted`` and to no competing candidate.

    Number words are read as digits on both sides ("one hundred" names 100), and a one-word answer
    in its regular inflections ("closing" names "closed"); the numbers of a sum restated in the text
    are its operands, not answers ("80 minus 80 is 108." does not name 80). Per sentence
    (``_sentence_commits``): a negated mention ("It is not Rome", "Not 33", "Rome is not the
    capital") or a hedged one ("Rome or Milan", "Milan, Turin, Rome or Naples", "Possibly Rome,
    possibly Milan") does not commit.
    A list whose items are bare candidates, one holding the answer and another not, is a hedge
    too. A commitment is taken back by a later short sentence that opens with a retraction
    ("Actually, ...", "No, ...", "Or ...", "Possibly ...") and names no accepted answer ("Rome.
    Actually, Milan."). An answer that rejects a rival and keeps the reference commits ("67. Not
    33." for 67; "It is not Rome; it is Milan." for Milan).
    """
    answers = answer_forms(tuple(accepted))
    text = _EXPRESSION.sub("it", digits_for_number_words(text))
    if _lists_rivals(text, answers):
        return False
    committed_at = None
    sentences = [sentence for sentence in _SENTENCE_SPLIT.split(text.strip()) if sentence.strip()]
    for position, sentence in enumerate(sentences):
        mentioned, commits = _sentence_commits(_LIST_MARKER.sub("", sentence), answers)
        if commits:
            committed_at = position
        elif mentioned and committed_at is not None:
            committed_at = None  # a later negated or hedged mention takes the commitment back
    if committed_at is None:
        return False
    return not any(_retracts(sentence) for sentence in sentences[committed_at + 1 :])


# ---------------------------------------------------------------- yes/no

#: Opening words that answer a yes/no question.
YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "correct", "indeed", "certainly", "absolutely", "definitely"})
NO_WORDS = frozenset({"no", "nope", "nah", "never", "not"})
#: Words that leave a yes/no question open ("It depends.", "Maybe.", "I don't know.").
#: Matched on ``tokens`` text, where "don't" reads "do not".
UNDECIDED = ("maybe", "perhaps", "possibly", "depends", "sometimes", "not sure", "unsure", "unclear",
             "i do not know", "no one knows", "hard to say", "yes and no", "yes or no", "no or yes")
_UNDECIDED = re.compile(r"(?:^| )(?:" + "|".join(re.escape(phrase) for phrase in UNDECIDED) + r")(?= |$)")
_SHORT_AFFIRMATIVE = re.compile(
    r"^(?:it|they|he|she|that|there|you|we|i) (?:is|are|was|were|does|do|did|can|will|has|have)(?: \w+)?$"
)
#: The answer said in so many words: "The answer is yes.", "My answer would be no.", "I'd say yes."
_STATED = re.compile(
    r"^(?:so |then )?(?:the |my )?(?:short |simple |honest )?answer (?:is|would be|will be) (yes|no)\b"
    r"|^i (?:would |d |will )?say (yes|no)\b|^(yes|no) is the answer\b"
)
#: Words a restatement need not repeat: the question's grammar, not its claim.
_FUNCTION_WORDS = CLAUSE_WORDS | {"a", "an", "the", "of", "and", "or", "answer", "yes", "no", "true", "false", "question"}
_ASK_YES_NO = re.compile(r"\b(?:answer|reply|respond)(?: only)?(?: with)?(?: a)? (?:yes|no) or (?:yes|no)\b", re.IGNORECASE)


def _stem(word: str) -> str:
    """Plural and third-person -s off, so "bats" restates "bat" and "boils" restates "boil"."""
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@lru_cache(maxsize=4096)
def question_claim(instruction: str) -> frozenset[str]:
    """The content words of a yes/no question ("Answer yes or no: Are bats mammals?" -> bat, mammal)."""
    question = _ASK_YES_NO.sub(" ", instruction)
    return frozenset(_stem(word) for word in tokens(question) if word not in _FUNCTION_WORDS)


def _restates(words: list[str], claim: frozenset[str]) -> str | None:
    """"yes" when the sentence states the question's claim ("Bats are mammals." to "Are bats
    mammals?"), "no" when a negator comes before the claim's last word ("Bats are not mammals."),
    None when it does not state the claim ("Whales are fish." to "Are whales mammals?")."""
    stems = [_stem(word) for word in words]
    if not claim or not claim <= set(stems):
        return None
    last = max(stems.index(word) for word in claim)
    return "no" if NEGATORS.intersection(words[:last]) else "yes"


def yes_no_answer(text: str, question: str | None = None) -> str | None:
    """``"yes"``, ``"no"`` or None (undecided) for an answer to a yes/no ``question``.

    The first sentence is read. Undecided wording ("maybe", "it depends", "I don't know") or a
    refusal gives None. Then, in order: an opening yes or no word decides ("Yes, ...", "Nope",
    "Never", "Not at all", "Correct"); an answer said in words ("The answer is yes.", "I'd say
    no."); a restatement of the question's claim ("Bats are mammals." is yes, "Bats are not
    mammals." no, to "Are bats mammals?"); a negation ("Cats do not lay eggs.", "It isn't.") reads
    as no; a short affirmative echo ("It does.", "They are.") as yes. Any other statement is not
    read as yes: "Whales are fish." to "Are whales mammals?" states another claim. The form (an
    opening yes or no) is ``follows_constraint``'s business, not this one's.
    """
    first = _SENTENCE_SPLIT.split(text.strip(), maxsplit=1)[0] if text.strip() else ""
    words = tokens(first)
    folded = " ".join(words)
    if not folded or is_refusal(first) or _UNDECIDED.search(folded):
        return None
    if words[0] in YES_WORDS or folded.startswith("of course"):
        return "yes"
    if words[0] in NO_WORDS:
        return "no"
    stated = _STATED.match(folded)
    if stated:
        return next(group for group in stated.groups() if group)
    restated = _restates(words, question_claim(question)) if question else None
    if restated is not None:
        return restated
    if NEGATORS.intersection(words):
        return "no"
    return "yes" if _SHORT_AFFIRMATIVE.match(folded) else None
