"""Stage manifests: what a stage read, with which config and seed, what it wrote and what it dropped.

A manifest is written last, after every output, so its presence means the stage finished; the
pipeline compares its input and config hashes to decide whether a stage is up to date.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Any

from stage1.io.atomic import atomic_write_json, dumps_json
from stage1.io.hashing import sha256_bytes, sha256_tree
from stage1.io.layout import MANIFEST

TRACKED_LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "stage1")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def config_hash(config: Any) -> str:
    return sha256_bytes(dumps_json(config).encode("utf-8"))


def hash_paths(paths: dict[str, str | Path]) -> dict[str, str]:
    """sha256 of each file (or folder) by name; a missing path is an error for the caller to see."""
    return {name: sha256_tree(path) for name, path in sorted(paths.items())}


def build_manifest(
    stage: str,
    *,
    config: Any,
    seed: int | None,
    inputs: dict[str, str | Path],
    outputs: dict[str, str | Path],
    counts: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "stage": stage,
        "config": config,
        "config_hash": config_hash(config),
        "seed": seed,
        "inputs": {name: str(path) for name, path in sorted(inputs.items())},
        "input_hashes": hash_paths(inputs),
        "outputs": {name: str(path) for name, path in sorted(outputs.items())},
        "output_hashes": hash_paths(outputs),
        "counts": counts,
        "versions": library_versions(),
        **(extra or {}),
    }


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_json(Path(out_dir) / MANIFEST, manifest)
