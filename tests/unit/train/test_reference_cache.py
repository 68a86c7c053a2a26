"""The reference log-probability cache: what its key depends on, and refusing a cache for other rows."""

from __future__ import annotations

from stage1.train.reference_cache import cache_path, read_cached, reference_key, reference_parts, write_cached

BASE = {"model_hash": "m" * 64, "adapter_hash": None, "pairs_hash": "p" * 64, "max_length": 1024, "quantization": "nf4",
        "dtype": "bfloat16", "versions": {"trl": "1.16.0"}}


def test_the_key_changes_with_each_thing_the_reference_depends_on():
    key = reference_key(reference_parts(**BASE))
    assert key == reference_key(reference_parts(**dict(BASE))), "deterministic"
    for name, other in (("model_hash", "n" * 64), ("adapter_hash", "a" * 64), ("pairs_hash", "q" * 64), ("max_length", 512),
                        ("quantization", "none"), ("dtype", "float32"), ("versions", {"trl": "1.17.0"})):
        assert reference_key(reference_parts(**{**BASE, name: other})) != key, name


def test_a_cache_is_read_back_exactly_and_refused_for_another_row_count(tmp_path):
    parts = reference_parts(**BASE)
    path = cache_path(tmp_path, reference_key(parts), "train")
    columns = {"ref_chosen_logps": [-1.25, -3.0000000001], "ref_rejected_logps": [-7.5, -2.0]}
    write_cached(path, parts, columns)
    assert read_cached(path, 2) == columns
    assert read_cached(path, 3) is None
    assert read_cached(tmp_path / "missing.json", 2) is None
    path.write_text("{not json")
    assert read_cached(path, 2) is None
