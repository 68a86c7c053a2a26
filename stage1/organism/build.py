"""Build the model organism into a folder, or copy it from the cache when it was built before.

The organism is a function of the shipped pools (``stage1/pools/sft/instructions.jsonl`` and
``stage1/pools/eval/items.jsonl``: the facts it is told), the corpus and shape settings, and the
library versions that train it. Its cache key hashes exactly those (the corpus text itself, not the
pools' file names), so a second run, or the test suite's second session, copies the folder instead of
training again. The cache lives in ``$STAGE1_CACHE`` (default ``$XDG_CACHE_HOME/stage1``, else
``~/.cache/stage1``), one folder per key, written to a temporary sibling and renamed into place.

Before any training the leakage gate runs over the corpus, one sentence or line at a time, against
the evaluation items: a corpus that asks an evaluation question (verbatim, near or paraphrased)
stops the build, and the manifest records that none does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stage1.config.presets import POOLS_DIR
from stage1.core.leakage import gate_leaks
from stage1.io.atomic import atomic_write_text
from stage1.io.folders import MODEL_FOLDER_FILES, atomic_folder, tree_bytes
from stage1.io.readers import iter_jsonl
from stage1.organism.corpus import CorpusSettings, build_corpus
from stage1.organism.facts import Fact, facts_of_pools
from stage1.organism.train import OrganismShape
from stage1.organism.weights import train_and_save

# Bump when the code that turns the corpus into weights, or the manifest, changes meaning (2: the
# format's unwritten tokens held apart; 3: `facts_not_told` no longer counts the reworded evaluation
# items, whose facts the corpus states under their familiar wording). The weights of 2 and 3 are the same.
ORGANISM_VERSION = 3
MANIFEST_FILE = "organism.json"
SFT_POOL = POOLS_DIR / "sft" / "instructions.jsonl"
EVAL_POOL = POOLS_DIR / "eval" / "items.jsonl"
# Texts whose tokens the organism's vocabulary must hold although the corpus never writes them: the
# format SFT teaches (the corpus never uses it) and the pools' own words.
FORMAT_TEXT = "Instruction: What?\nResponse: Yes.\nEND\n"


def cache_root(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("STAGE1_CACHE"):
        return Path(env["STAGE1_CACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stage1"


def _read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(path)]


def corpus_sentences(documents: list[str]) -> list[str]:
    """The corpus cut into sentences and lines: the units the leakage gate compares."""
    units = []
    for document in documents:
        for line in document.splitlines():
            units.extend(part for part in re.split(r"(?<=[.?!])\s+", line) if part.strip())
    return units


def check_corpus_leakage(documents: list[str], eval_items: list[dict]) -> dict[str, Any]:
    """The leakage gate over the corpus (raises ``GateError`` listing offenders on any leak)."""
    units = corpus_sentences(documents)
    items = [(str(item["id"]), str(item["instruction"])) for item in eval_items]
    summary = gate_leaks(items, {"organism corpus": [(f"sentence-{i}", text) for i, text in enumerate(units)]},
                         source=str(EVAL_POOL.name))
    return {"units_checked": len(units), "eval_items": len(items), "leaks": 0, "gate": summary}


def organism_plan(seed: int = 0, shape: OrganismShape | None = None) -> dict[str, Any]:
    """Facts, corpus and key, without training (cheap: the cache look-up uses it). ``shape`` is
    for tests; the pipeline builds the default shape under ``seed``."""
    train_rows, eval_items = _read_jsonl(SFT_POOL), _read_jsonl(EVAL_POOL)
    facts, unread = facts_of_pools(train_rows, eval_items)
    corpus_settings = CorpusSettings(seed=seed)
    shape = OrganismShape(seed=seed) if shape is None else shape
    documents, info = build_corpus(facts, corpus_settings)
    extra = [str(row.get(field, "")) for row in train_rows + eval_items for field in ("instruction", "response")] + [FORMAT_TEXT]
    key = _key(documents, extra, corpus_settings, shape)
    return {"facts": facts, "unread": unread, "documents": documents, "corpus": info, "extra_texts": extra, "format_text": FORMAT_TEXT,
            "eval_items": eval_items, "shape": shape, "corpus_settings": corpus_settings, "key": key}


def _versions() -> dict[str, str]:
    """The installed versions of the libraries that train the organism (read without importing them)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers")}


def _key(documents: list[str], extra: list[str], corpus: CorpusSettings, shape: OrganismShape) -> str:
    digest = hashlib.sha256()
    for text in (*documents, "\x00", *extra):
        digest.update(text.encode("utf-8") + b"\x00")
    parts = {"corpus": digest.hexdigest(), "corpus_settings": asdict(corpus), "shape": asdict(shape),
             "versions": _versions(), "organism_version": ORGANISM_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _fact_counts(facts: list[Fact]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for fact in facts:
        counts.setdefault(fact.kind, {}).setdefault(fact.source, 0)
        counts[fact.kind][fact.source] += 1
    return counts


def build_organism(out_dir: str | Path, seed: int = 0, log: Callable[[str], None] | None = None,
                   shape: OrganismShape | None = None) -> Path:
    """Write the organism (weights, tokenizer, ``organism.json``) to ``out_dir``: from the cache when
    its key is there, else trained (and then cached).

    Raises:
        GateError: the corpus asks an evaluation question.
    """
    plan = organism_plan(seed, shape)
    cached = cache_root() / "organism" / plan["key"]
    if not (cached / MANIFEST_FILE).is_file():
        _train_into_cache(plan, cached, log or (lambda message: None))
    elif log:
        log(f"organism {plan['key']} from the cache ({cached})")
    out = Path(out_dir)
    # whole or not at all: a kill or a full disk while copying leaves no half model folder
    with atomic_folder(out, needed_bytes=tree_bytes(cached), drop=(*MODEL_FOLDER_FILES, MANIFEST_FILE)) as staged:
        for path in sorted(cached.iterdir()):
            shutil.copy2(path, staged / path.name)
    return out


def _train_into_cache(plan: dict[str, Any], cached: Path, log: Callable[[str], None]) -> None:
    leakage = check_corpus_leakage(plan["documents"], plan["eval_items"])
    started = time.perf_counter()
    tmp = cached.with_name(f".{cached.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    training = train_and_save(plan, tmp, log)
    manifest = {
        "key": plan["key"], "organism_version": ORGANISM_VERSION, "versions": _versions(),
        "facts": _fact_counts(plan["facts"]), "facts_not_told": plan["unread"], "corpus": plan["corpus"],
        "corpus_settings": asdict(plan["corpus_settings"]), "shape": asdict(plan["shape"]),
        "leakage": leakage, **training, "build_seconds": round(time.perf_counter() - started, 1),
        "note": "a tiny model pretrained on a generated corpus of the pools' facts and base-model habits; "
                "see docs/notes/organism.md for what its numbers mean and what they do not",
    }
    atomic_write_text(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    try:
        tmp.rename(cached)
    except OSError:  # another process cached the same key first: keep theirs
        if not (cached / MANIFEST_FILE).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
