"""The generation journal: committed batches survive a kill at any byte, torn tails are ignored,
damage inside committed batches is refused, and a resumed generation equals an uninterrupted one."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.core.errors import InputError
from stage1.core.generation import Generation, GenerationSettings
from stage1.core.seeds import row_seed
from stage1.io.journal import (
    JOURNAL_NAME,
    STALE_NAME,
    GenerationJournal,
    batch_lines,
    generate_with_journal,
    header_line,
    journal_fingerprint,
    model_identity,
    parse_journal,
)

FINGERPRINT = "f" * 64


def generation(text: str, tokens: int = 3) -> Generation:
    return Generation(prompt=f"Instruction: {text}?\nResponse:", completion_text=f" {text}.\nEND", response=f"{text}.",
                      stop_reason="end", stopped=True, runaway=False, num_tokens=tokens)


BATCHES = [
    [(("q1", 0), generation("one")), (("q1", 1), generation("uno \u00e9\u00e8 \"quoted\"\n{braces}"))],
    [(("q2", 0), generation("two", 5))],
    [(("q3", 0), generation("three")), (("q4", 0), generation("four"))],
]


def journal_bytes(batches=BATCHES, fingerprint=FINGERPRINT) -> bytes:
    return (header_line(fingerprint) + "".join(batch_lines(batch) for batch in batches)).encode("utf-8")


def test_committed_rows_read_back_equal(tmp_path):
    contents = parse_journal(journal_bytes(), FINGERPRINT, tmp_path / JOURNAL_NAME)
    assert contents.status == "resumed"
    assert contents.done == {key: g for batch in BATCHES for key, g in batch}
    assert contents.committed_bytes == len(journal_bytes())
    assert contents.discarded_rows == 0


@given(cut=st.integers(min_value=0, max_value=len(journal_bytes())))
def test_a_kill_at_any_byte_keeps_exactly_the_batches_committed_before_it(cut):
    """Property: for every prefix of the file, the rows read are the whole batches whose commit line
    (with its newline) lies inside the prefix, and the committed length ends on that commit line."""
    data = journal_bytes()
    contents = parse_journal(data[:cut], FINGERPRINT, None)
    ends, offset = [], len(header_line(FINGERPRINT).encode())
    for batch in BATCHES:
        offset += len(batch_lines(batch).encode())
        ends.append(offset)
    whole = [i for i, end in enumerate(ends) if end <= cut]
    assert contents.done == {key: g for i in whole for key, g in BATCHES[i]}
    if cut < len(header_line(FINGERPRINT).encode()):
        assert contents.status == "missing"
    else:
        assert contents.committed_bytes == (ends[whole[-1]] if whole else len(header_line(FINGERPRINT).encode()))


def test_garbage_after_the_last_commit_is_a_torn_batch_not_an_error(tmp_path):
    data = journal_bytes(BATCHES[:1]) + b'{"key": ["q2", 0], "gener\x00\x00\x00\n\x00\x00\n'
    contents = parse_journal(data, FINGERPRINT, tmp_path / JOURNAL_NAME)
    assert set(contents.done) == {("q1", 0), ("q1", 1)}
    assert contents.discarded_rows >= 1


def test_damage_inside_a_committed_batch_is_refused_with_the_line(tmp_path):
    lines = journal_bytes().split(b"\n")
    lines[2] = b'{"key": ["q1", 1], "generation": {not json'
    with pytest.raises(InputError) as raised:
        parse_journal(b"\n".join(lines), FINGERPRINT, tmp_path / JOURNAL_NAME)
    assert raised.value.line == 3 and JOURNAL_NAME in str(raised.value) and "delete it" in str(raised.value)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"key": ["q9"], "generation": {}}, "key"),
        ({"key": ["q9", True], "generation": {}}, "key"),
        ({"key": ["q9", 0], "generation": {"prompt": "p"}}, "generation"),
        ({"key": ["q9", 0], "generation": {**generation("x").__dict__, "num_tokens": "3"}}, "generation.num_tokens"),
        ({"key": ["q9", 0], "generation": {**generation("x").__dict__, "stopped": 1}}, "generation.stopped"),
    ],
)
def test_a_committed_row_of_the_wrong_shape_names_its_field(tmp_path, row, field):
    data = (header_line(FINGERPRINT) + json.dumps(row) + "\n" + json.dumps({"commit": 1}) + "\n").encode()
    with pytest.raises(InputError) as raised:
        parse_journal(data, FINGERPRINT, tmp_path / JOURNAL_NAME)
    assert raised.value.field == field and raised.value.line == 2


def test_a_commit_count_that_does_not_match_is_refused(tmp_path):
    data = journal_bytes(BATCHES[:1]).replace(b'{"commit": 2}', b'{"commit": 3}')
    with pytest.raises(InputError, match="commit count"):
        parse_journal(data, FINGERPRINT, tmp_path / JOURNAL_NAME)


def test_another_fingerprint_reuses_nothing_and_moves_the_old_journal_aside(tmp_path):
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(journal_bytes(fingerprint="0" * 64))
    with GenerationJournal.open(path, FINGERPRINT) as journal:
        assert journal.done == {} and journal.contents.status == "stale"
    assert (tmp_path / STALE_NAME).read_bytes() == journal_bytes(fingerprint="0" * 64)
    assert path.read_bytes() == header_line(FINGERPRINT).encode()


def test_reopening_cuts_the_torn_tail_before_appending(tmp_path):
    path = tmp_path / JOURNAL_NAME
    with GenerationJournal.open(path, FINGERPRINT) as journal:
        journal.append(BATCHES[0])
    with open(path, "ab") as handle:
        handle.write(batch_lines(BATCHES[1]).encode()[:-7])  # killed mid-write
    with GenerationJournal.open(path, FINGERPRINT) as journal:
        assert set(journal.done) == {key for key, _ in BATCHES[0]}
        journal.append(BATCHES[1])
        journal.append(BATCHES[2])
    assert path.read_bytes() == journal_bytes()


def test_the_fingerprint_changes_with_prompts_seeds_decoding_and_model():
    keys, prompts, seeds = [("q1", 0), ("q1", 1)], ["a", "b"], [1, 2]
    settings, context = GenerationSettings(), {"model": {"config.json": "x"}}
    base = journal_fingerprint(keys, prompts, seeds, settings, context)
    assert base == journal_fingerprint(list(keys), list(prompts), list(seeds), GenerationSettings(), dict(context))
    assert base != journal_fingerprint(keys, ["a", "c"], seeds, settings, context)
    assert base != journal_fingerprint(keys, prompts, [1, 3], settings, context)
    assert base != journal_fingerprint([("q1", 0), ("q2", 0)], prompts, seeds, settings, context)
    assert base != journal_fingerprint(keys, prompts, seeds, GenerationSettings(batch_size=4), context)
    assert base != journal_fingerprint(keys, prompts, seeds, settings, {"model": {"config.json": "y"}})


def test_model_identity_sees_weights_of_the_same_size_that_differ(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "a" / "model.safetensors").write_bytes(bytes(3 << 20))
    (tmp_path / "b" / "model.safetensors").write_bytes(bytes(3 << 19) + b"\x01" + bytes((3 << 19) - 1))
    first, second = model_identity(tmp_path / "a"), model_identity(tmp_path / "b")
    assert first["config.json"] == second["config.json"]
    assert first["weights"] != second["weights"]


# ---------------------------------------------------------------- resuming a generation


class Crash(Exception):
    pass


class RecordingBackend:
    """Deterministic stand-in for a backend: text from prompt and seed; may crash after N batches."""

    def __init__(self, crash_after: int | None = None):
        self.batches: list[list[str]] = []
        self.crash_after = crash_after

    def generate_batch(self, prompts, settings, seeds):
        if self.crash_after is not None and len(self.batches) == self.crash_after:
            raise Crash
        self.batches.append(list(prompts))
        return [generation(f"{prompt}-{seed % 1000}-{len(prompts)}") for prompt, seed in zip(prompts, seeds)]


KEYS = [(f"q{i}", s) for i in range(5) for s in range(2)]
PROMPTS = [f"p{i}" for i in range(len(KEYS))]
SEEDS = [row_seed(0, 0, *key) for key in KEYS]
PLAN = [[0, 3, 5], [1, 2, 4], [6, 7], [8, 9]]


def run(path, backend_box, crash_after=None):
    created = []

    def make_backend():
        created.append(RecordingBackend(crash_after))
        backend_box.append(created[-1])
        return created[-1]

    with GenerationJournal.open(path, FINGERPRINT) as journal:
        return generate_with_journal(journal, PLAN, KEYS, PROMPTS, SEEDS, GenerationSettings(), make_backend), created


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3])
def test_a_resumed_generation_equals_an_uninterrupted_one(tmp_path, crash_after):
    (reference, counts), _ = run(tmp_path / "a" / JOURNAL_NAME, [])
    assert counts == {"reused": 0, "generated": 10, "batches": 4}
    with pytest.raises(Crash):
        run(tmp_path / "b" / JOURNAL_NAME, [], crash_after=crash_after)
    backends: list[RecordingBackend] = []
    (resumed, counts), created = run(tmp_path / "b" / JOURNAL_NAME, backends)
    assert resumed == reference
    assert (tmp_path / "b" / JOURNAL_NAME).read_bytes() == (tmp_path / "a" / JOURNAL_NAME).read_bytes()
    assert len(created) == 1, "one backend, made once"
    assert backends[0].batches == [[PROMPTS[i] for i in batch] for batch in PLAN[crash_after:]], "only the missing batches, whole"
    assert counts == {"reused": sum(len(b) for b in PLAN[:crash_after]), "generated": 10 - counts["reused"], "batches": 4 - crash_after}


def test_a_partly_journalled_batch_is_decoded_whole_and_only_its_missing_rows_appended(tmp_path):
    path = tmp_path / JOURNAL_NAME
    (reference, _), _ = run(tmp_path / "ref" / JOURNAL_NAME, [])
    with GenerationJournal.open(path, FINGERPRINT) as journal:
        journal.append([(KEYS[0], reference[0])])  # one row of the first batch, as an older plan could leave
    backends: list[RecordingBackend] = []
    (resumed, counts), _ = run(path, backends)
    assert resumed == reference
    assert backends[0].batches[0] == [PROMPTS[i] for i in PLAN[0]], "the batch keeps its composition"
    assert counts["reused"] == 1 and counts["generated"] == 9


def test_progress_counts_every_row_once_reused_or_generated(tmp_path):
    from stage1.core import progress

    with pytest.raises(Crash):
        run(tmp_path / JOURNAL_NAME, [], crash_after=2)
    reports = []
    with progress.listening(lambda task, advance, total: reports.append((task, advance, total))):
        run(tmp_path / JOURNAL_NAME, [])
    assert reports == [("generating", len(batch), len(KEYS)) for batch in PLAN]


def test_nothing_is_loaded_when_every_batch_is_journalled(tmp_path):
    path = tmp_path / JOURNAL_NAME
    (reference, _), _ = run(path, [])
    before = os.stat(path).st_size
    (again, counts), created = run(path, [])
    assert again == reference and created == [] and counts == {"reused": 10, "generated": 0, "batches": 0}
    assert os.stat(path).st_size == before
