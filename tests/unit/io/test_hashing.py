"""Content hashes (stage1.io.hashing)."""

from __future__ import annotations

from stage1.io.hashing import sha256_tree


def test_tree_hash_sees_content_changes(tmp_path):
    (tmp_path / "a").write_text("1")
    before = sha256_tree(tmp_path)
    (tmp_path / "a").write_text("2")
    assert sha256_tree(tmp_path) != before
