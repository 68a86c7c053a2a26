"""One tokenizer load per process for each distinct tokenizer.

A run reads the same tokenizer in most stages (the base model's folder, and the merged model's,
which holds a copy of the same files), and transformers takes seconds to build a 151k-token
tokenizer each time. transformers keeps no such cache, so it is kept here: keyed by the content of
the files a tokenizer is built from (so a copy in another folder is the same entry, and a changed
file is a new one), and handed out only while the settings a trainer may change on it (pad and eos
token, chat template, padding side) are still those it was loaded with.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stage1.io.hashing import sha256_file
from stage1.io.plain import read_json

#: Files that decide the tokenizer (``AutoTokenizer`` reads these, and ``config.json`` for the model type).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model")
#: Copied with the tokenizer files into a model folder made from another (a merged model).
COPIED_FILES = (*TOKENIZER_FILES, "chat_template.jinja")
#: What TRL's trainers set on a tokenizer when asked to (``pad_token``, ``eos_token``, ``chat_template_path``).
MUTABLE = ("pad_token", "eos_token", "chat_template", "padding_side", "truncation_side", "model_max_length")

_cache: dict[str, tuple[Any, tuple]] = {}
loads = 0  # tokenizers built in this process (the bench and the tests read it)
requests = 0  # tokenizers asked for: what ``loads`` would be without the cache


def tokenizer_key(folder: Path, trust_remote_code: bool) -> str:
    """A digest of the tokenizer files in ``folder`` and its model type."""
    digest = hashlib.sha256(f"remote={trust_remote_code}".encode())
    for name in TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + bytes.fromhex(sha256_file(path)))
    config = folder / "config.json"
    if config.is_file():
        try:
            model_type = read_json(config).get("model_type")
        except (ValueError, AttributeError):
            model_type = None
        digest.update(f"model_type={model_type}".encode())
    return digest.hexdigest()


def _state(tokenizer: Any) -> tuple:
    return tuple(repr(getattr(tokenizer, name, None)) for name in MUTABLE)


def cached_tokenizer(folder: Path, trust_remote_code: bool, load: Callable[[], Any]) -> Any:
    """The tokenizer ``load()`` builds from ``folder``, built once per distinct content."""
    global loads, requests
    requests += 1
    key = tokenizer_key(folder, trust_remote_code)
    hit = _cache.get(key)
    if hit is not None and _state(hit[0]) == hit[1]:
        return hit[0]
    tokenizer = load()
    loads += 1
    _cache[key] = (tokenizer, _state(tokenizer))
    return tokenizer


def copy_tokenizer_files(source: Path, target: Path) -> list[str]:
    """Copy ``source``'s tokenizer files into ``target`` byte for byte; the names copied.

    A model folder made from another (the merged model) gets the same bytes rather than the
    tokenizer re-saved: ``save_pretrained`` rewrites the files (key order, defaults of the running
    transformers), so the copy would be a second cache entry and a second build in one process. The
    tokenizer is the same either way: ``load_tokenizer`` drops the chat template and sets the pad
    token on whatever it reads.
    """
    copied = []
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
            copied.append(name)
    return copied


def clear() -> None:
    """Forget every cached tokenizer (tests)."""
    _cache.clear()
