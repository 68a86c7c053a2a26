"""Tokenise the organism's corpus, pretrain it and save it as a Qwen2 folder (torch, transformers).

The fill-in-the-blank probe in the manifest asks the pretrained model to finish the first template
of a fact ("The capital of Italy is") and counts exact answers, for facts told by training rows and
for held-out facts apart: what the model knows before SFT, in the corpus's own words.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stage1.hf.tiny import ENDOFTEXT, QWEN2_5_VOCAB_SIZE, SPECIAL_TOKENS, build_qwen2_tokenizer, stamp_config
from stage1.organism.facts import Fact
from stage1.organism.train import export_check, export_full, pretrain, token_rows

PROBE_TEMPLATES = {
    "capital": ("The capital of {country} is", "city"),
    "arithmetic": ("{a} {op} {b} is", "result"),
    "antonym": ("The opposite of {word} is", "opposite"),
    "conversion": ("{amount} {unit} is", "result"),
}


def _vocabulary(tokenizer, written: set[int], extra: list[str], eos: int) -> list[int]:
    """The trained tokens: those the corpus writes (``written``), those of ``extra`` texts, and eos."""
    ids = set(written)
    for text in extra:
        ids.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    return sorted(ids | {eos})


def probe_prompts(facts: list[Fact]) -> list[tuple[str, str, str]]:
    """(source, prompt, answer) for every fact of a probed kind."""
    probes = []
    for fact in facts:
        if fact.kind in PROBE_TEMPLATES:
            template, answer = PROBE_TEMPLATES[fact.kind]
            slots = dict(fact.slots)
            probes.append((fact.source, template.format(**slots), slots[answer]))
    return probes


def fill_in_the_blank(model, tokenizer, facts: list[Fact], eos: int) -> dict[str, float]:
    """Share of probed facts whose greedy continuation starts with the answer, by source."""
    import torch

    probes = probe_prompts(facts)
    tokenizer.padding_side = "left"
    hits: dict[str, list[bool]] = {}
    model.eval()
    for start in range(0, len(probes), 64):
        chunk = probes[start:start + 64]
        batch = tokenizer([prompt for _, prompt, _ in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=eos)
        for (source, _, answer), ids in zip(chunk, out):
            text = tokenizer.decode(ids[batch["input_ids"].shape[1]:], skip_special_tokens=True)
            hits.setdefault(source, []).append(text.strip().startswith(answer))
    tokenizer.padding_side = "right"
    return {source: round(sum(values) / len(values), 4) for source, values in sorted(hits.items())}


def train_and_save(plan: dict[str, Any], folder: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Pretrain on ``plan`` (from ``organism_plan``) and save the full-vocabulary model to ``folder``."""
    import torch
    from transformers import GenerationConfig

    shape, eos = plan["shape"], SPECIAL_TOKENS[ENDOFTEXT]
    tokenizer = build_qwen2_tokenizer()
    documents = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in plan["documents"]]
    written = {token for document in documents for token in document}
    vocab = _vocabulary(tokenizer, written, plan["extra_texts"], eos)
    compact = {token: index for index, token in enumerate(vocab)}
    rows = token_rows([[compact[t] for t in doc] for doc in documents], shape.seq_len, compact[eos], random.Random(shape.seed))
    others = QWEN2_5_VOCAB_SIZE - len(vocab)
    threads = torch.get_num_threads()  # every core by default; 1 per test worker (tests/conftest.py)
    started = time.perf_counter()
    log(f"organism: pretraining {shape.steps} steps on {len(rows)} rows of {shape.seq_len} tokens "
        f"({len(vocab)}-token vocabulary)")
    held_apart = [compact[t] for t in tokenizer(plan["format_text"], add_special_tokens=False)["input_ids"] if t not in written]
    small, curve = pretrain(rows, len(vocab) + 1, others, shape, compact[eos], held_apart=held_apart,
                            log=lambda step, loss: log(f"organism: step {step}/{shape.steps} loss {loss:.3f}"))
    seconds = time.perf_counter() - started
    full = export_full(small, vocab, QWEN2_5_VOCAB_SIZE, shape, eos)
    difference = export_check(small, full, vocab, rows, others)
    probe = fill_in_the_blank(full, tokenizer, plan["facts"], eos)
    full.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=False,
                                              max_new_tokens=64)
    full.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    stamp_config(folder, {"kind": "organism", "key": plan["key"], "note": "pretrained on a generated corpus; see organism.json"})
    return {"vocabulary": len(vocab), "corpus_tokens": sum(map(len, documents)), "rows": len(rows),
            "passes": round(shape.steps * shape.batch_size / max(1, len(rows)), 1), "loss_curve": curve,
            "final_loss": curve[-1], "pretrain_seconds": round(seconds, 1), "threads": threads, "export_max_logp_difference": difference,
            "fill_in_the_blank": probe}
