"""The negatives stage: ``<sft_path>`` in, ``<out_dir>/negatives.jsonl`` and its manifest out.

The SFT file is streamed, never held whole: one pass fills the seeded donor pool and checks ids,
the next makes the negatives straight into the output file, so memory does not grow with the
number of rows (``bench.data`` measures peak RSS at 10,000 and 100,000 rows). Imports no torch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import GateError, InputError
from stage1.core.records import BadRows, RecordError, SFTExample, plain_fields
from stage1.io.atomic import atomic_write_jsonl
from stage1.io.layout import NEGATIVES_FILE
from stage1.io.manifest import build_manifest, write_manifest
from stage1.io.readers import iter_rows
from stage1.negatives.core import COMPLIED, REFUSAL, DonorPool, generate_negatives
from stage1.negatives.counts import kind_shortfalls
from stage1.negatives.settings import NegativeSettings

STAGE = "negatives"
log = logging.getLogger(__name__)
#: What to try when off-topic negatives fall short, by ``negatives.off_topic_from``.
_HINTS = {
    "same_category": {"off_topic": "it borrows another answer of the item's own category: a category of one "
                                   "example lends it none; negatives.off_topic_from: other_categories borrows across categories"},
    "other_categories": {"off_topic": "it borrows another category's answer: a pool of one category lends it none; "
                                      "negatives.off_topic_from: same_category borrows within the category"},
}
_BLOOM_BITS = 1 << 23  # 1 MiB: false positives stay rare up to millions of ids, and only cost a re-read


def stream_examples(source: Path, on_bad_rows: str, bad_rows: BadRows | None) -> Iterator[tuple[int, SFTExample]]:
    """``(line, example)`` for each usable row; a bad row raises (file, line, field) or is counted."""
    for line, row in iter_rows(source):
        try:
            yield line, SFTExample.from_dict(row)
        except RecordError as error:
            failure = InputError(error.message, path=source, line=line, field=error.field, hint=error.hint)
            if on_bad_rows == "stop":
                raise failure from None
            if bad_rows is not None:
                bad_rows.add(str(failure))


def _bloom_positions(key: str) -> tuple[int, int, int]:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=12).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") % _BLOOM_BITS for i in (0, 4, 8))  # type: ignore[return-value]


class _IdCheck:
    """Duplicate ids found in fixed memory: a Bloom filter flags the ids that may repeat, and only
    those are counted exactly, on a re-read of the file (``confirm``) that happens only when any
    was flagged."""

    def __init__(self) -> None:
        self.bits = bytearray(_BLOOM_BITS // 8)
        self.suspects: set[str] = set()

    def add(self, key: str) -> None:
        positions = _bloom_positions(key)
        if all(self.bits[p >> 3] & (1 << (p & 7)) for p in positions):
            self.suspects.add(key)
        for p in positions:
            self.bits[p >> 3] |= 1 << (p & 7)

    def confirm(self, source: Path, on_bad_rows: str) -> None:
        if not self.suspects:
            return
        first: dict[str, int] = {}
        for line, example in stream_examples(source, on_bad_rows, None):
            if example.id in self.suspects:
                if example.id in first:
                    raise InputError(f"duplicate id {example.id!r} (first seen on line {first[example.id]})",
                                     path=source, line=line, field="id", hint="ids must be unique within a file")
                first[example.id] = line


def _first_pass(source: Path, settings: NegativeSettings, on_bad_rows: str, bad_rows: BadRows) -> tuple[DonorPool, int]:
    ids = _IdCheck()
    usable = 0

    def examples() -> Iterator[SFTExample]:
        nonlocal usable
        for _, example in stream_examples(source, on_bad_rows, bad_rows):
            ids.add(example.id)
            usable += 1
            yield example

    donors = DonorPool.from_examples(examples(), settings.donor_pool_size, settings.seed)
    ids.confirm(source, on_bad_rows)
    if not usable:
        raise InputError("no usable SFT examples", path=source, hint="run the sft_data stage first, or check the file")
    return donors, usable


def run_negatives(
    settings: NegativeSettings, *, sft_path: str | Path, out_dir: str | Path, on_bad_rows: str = "stop"
) -> dict[str, Any]:
    """Write rule-based negatives for every SFT example; return the manifest.

    Two passes over the examples: the first fills the seeded donor pool (answers of other
    categories for off-topic and runaway negatives) and checks ids, the second makes the
    negatives, streamed to the output file.

    Raises:
        InputError: a bad SFT row (file, line, field), duplicate ids, or no usable rows.
        GateError: a kind of the mix made fewer than ``kind_floor`` of its planned negatives
            (``on_kind_floor: stop``); the message names the kind and why. Nothing is written.
    """
    source, out = Path(sft_path), Path(out_dir)
    if on_bad_rows not in ("stop", "skip"):
        raise ValueError(f"on_bad_rows must be 'stop' or 'skip', got {on_bad_rows!r}")
    bad_rows = BadRows()
    donors, usable = _first_pass(source, settings, on_bad_rows, bad_rows)
    negatives, counts = generate_negatives((e for _, e in stream_examples(source, on_bad_rows, None)), settings, donors)
    shortfalls: list[str] = []

    def checked_rows() -> Iterator[dict[str, Any]]:
        yield from (plain_fields(negative) for negative in negatives)
        # Checked before the file is renamed into place: a stop leaves nothing behind.
        weights = dict(zip(settings.mix.kinds(), settings.mix.weights()))
        shortfalls.extend(kind_shortfalls(counts, weights, settings.kind_floor, {COMPLIED: REFUSAL}, _HINTS[settings.off_topic_from]))
        if shortfalls and settings.on_kind_floor == "stop":
            raise GateError("negatives: a kind of the mix fell below its floor (negatives.kind_floor): " + "; ".join(shortfalls))

    output = atomic_write_jsonl(out / NEGATIVES_FILE, checked_rows())
    for message in shortfalls:
        log.warning("negatives: %s", message)
    manifest = build_manifest(
        STAGE,
        config=settings_to_dict(settings),
        seed=settings.seed,
        inputs={"sft": source},
        outputs={"negatives": output},
        counts={"input_rows": usable + bad_rows.count, **counts.to_dict()},
        extra={"bad_rows": bad_rows.to_dict(), "warnings": shortfalls},
    )
    write_manifest(out, manifest)
    return manifest
