"""The negatives stage: ``<sft_path>`` in, ``<out_dir>/negatives.jsonl`` and its manifest out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stage1.config.typed import settings_to_dict
from stage1.core.errors import InputError
from stage1.core.records import BadRows, SFTExample, check_unique_ids
from stage1.io.atomic import atomic_write_jsonl
from stage1.io.layout import NEGATIVES_FILE
from stage1.io.manifest import build_manifest, write_manifest
from stage1.io.records import read_records
from stage1.negatives.core import DonorPool, generate_negatives
from stage1.negatives.settings import NegativeSettings

STAGE = "negatives"


def plain_fields(record: Any) -> dict[str, Any]:
    """``record.to_dict()`` for a record whose fields are all plain values, without ``asdict``'s deep
    copy (a third of the stage's time at 100,000 examples)."""
    return dict(vars(record))


def run_negatives(
    settings: NegativeSettings, *, sft_path: str | Path, out_dir: str | Path, on_bad_rows: str = "stop"
) -> dict[str, Any]:
    """Write rule-based negatives for every SFT example; return the manifest.

    Two passes over the examples: the first fills the seeded donor pool (answers of other
    categories for off-topic and runaway negatives), the second makes the negatives, streamed
    to the output file.

    Raises:
        InputError: a bad SFT row (file, line, field), duplicate ids, or no usable rows.
    """
    source, out = Path(sft_path), Path(out_dir)
    bad_rows = BadRows()
    examples = read_records(source, SFTExample, on_bad_rows=on_bad_rows, bad_rows=bad_rows)
    check_unique_ids(examples, source)
    if not examples:
        raise InputError("no usable SFT examples", path=source, hint="run the sft_data stage first, or check the file")
    donors = DonorPool.from_examples(examples, settings.donor_pool_size, settings.seed)
    negatives, counts = generate_negatives(examples, settings, donors)
    output = atomic_write_jsonl(out / NEGATIVES_FILE, (plain_fields(negative) for negative in negatives))
    manifest = build_manifest(
        STAGE,
        config=settings_to_dict(settings),
        seed=settings.seed,
        inputs={"sft": source},
        outputs={"negatives": output},
        counts={"input_rows": len(examples) + bad_rows.count, **counts.to_dict()},
        extra={"bad_rows": bad_rows.to_dict()},
    )
    write_manifest(out, manifest)
    return manifest
