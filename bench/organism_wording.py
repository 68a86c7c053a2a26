"""How much of the organism's factual score is the evaluation's wording: the same SFT model asked
the same held-out facts twice, once in the evaluation pool's words and once in the words SFT was
trained on. Not part of the pipeline; docs/notes/organism.md gives its figures.

    python -m bench.organism_wording --run-dir runs/tiny [--variant sft] [--work /tmp/wording]
    python -m bench.organism_wording --model <model folder>   # the copy probe alone, on any model

The evaluation pool asks every fact in a wording no SFT row uses ("Which city is the capital of
Italy?", where SFT's rows say "What is the capital of France?"): the leakage gate refuses an
evaluation item that paraphrases a training row, so every factual item is also a test of a wording
SFT never saw. This asks the items whose fact a template reads (capitals, sums, conversions,
antonyms, completions; the format items left out of both sides) in the SFT pool's own wording as
well, and prints correct answers by kind for both, on the same items and the same model; and,
beside them, what the run's base model (the organism) stores: the manifest's fill-in-the-blank probe
("The capital of Italy is" -> "Rome") by kind of fact, for facts SFT trains on and held-out ones.

Last, where the answers in the evaluation's wording go wrong: for the held-out capitals, antonyms and
completions, the SFT model is given the evaluation's prompt and the opening of an answer as its SFT
rows write it ("Instruction: Give the opposite of big.\nResponse: The opposite of"), and counts
whether it goes on with the question's own entity (" big") by greedy decoding; and, given the whole
fragment ("... The opposite of big is"), whether it goes on with the reference ("small").
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stage1.eval.settings import variants_in_run
from stage1.io.layout import RunLayout
from stage1.organism.build import EVAL_POOL, _read_jsonl
from stage1.organism.facts import fact_of_row, facts_of_pools
from stage1.organism.weights import PROBE_TEMPLATES

# The SFT pool's wording of each kind (stage1/pools/sft/instructions.jsonl).
SFT_WORDING = {
    "capital": "What is the capital of {country}?",
    "arithmetic": "What is {a} {op} {b}?",
    "conversion": "How many {target} are in {amount} {unit}?",
    "antonym": "What is the opposite of {word}?",
}
_COMPLETION = re.compile(r"^(?:Finish this sentence|Say how this sentence ends): ")
# Kinds whose answer opens as the fill-in-the-blank probe's fragment does ("The capital of {country} is",
# as SFT's rows answer); the completions' fragment is their own start.
_OPENED_KINDS = ("capital", "antonym")
_SLOT = re.compile(r"\{(\w+)\}")


def reworded(items: Iterable[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(the items as the evaluation words them, the same items in the SFT pool's wording): the
    factual items of the fact categories whose fact a template reads, format items left out."""
    asked, sft = [], []
    for item in items:
        if item.get("category") == "format_constraint" or item.get("refusal_expected"):
            continue
        fact = fact_of_row(item, "heldout")
        if fact is None or not item.get("reference"):
            continue
        if fact.kind in SFT_WORDING:
            instruction = SFT_WORDING[fact.kind].format(**dict(fact.slots))
        elif fact.kind == "completion":
            instruction = _COMPLETION.sub("Complete the sentence: ", str(item["instruction"]))
        else:
            continue
        asked.append(dict(item))
        sft.append({**item, "instruction": instruction})
    return asked, sft


def correct_by_category(results: Mapping[str, Any], variant: str) -> tuple[Counter, Counter]:
    """(correct answers, items) by category, from an evaluation's ``results.json``. Counted from its
    items: its ``categories`` rates pool every category under ``min_items`` (30), and the capitals (27)
    and completions (15) are what this compares."""
    correct, total = Counter(), Counter()
    for item in results["items"]:
        verdict = item["outcomes"][variant]["criteria"]["factually_correct"]
        if verdict is not None:
            total[item["category"]] += 1
            correct[item["category"]] += bool(verdict)
    return correct, total


def copy_probes(items: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """For each held-out capital, antonym and completion item in the evaluation's wording: its kind,
    its prompt, the opening of an answer and the entity that must follow it, the fragment up to the
    answer and the answer's first word (pure)."""
    from stage1.core.format import render_prompt

    probes = []
    for item in items:
        fact = fact_of_row(item, "heldout") if item.get("reference") else None
        if fact is None or item.get("category") == "format_constraint":
            continue
        slots = dict(fact.slots)
        if fact.kind in _OPENED_KINDS:
            template, answer_slot = PROBE_TEMPLATES[fact.kind]
            opening = template.split(" {", 1)[0]
            entity, fragment, answer = slots[_SLOT.search(template)[1]], template.format(**slots), slots[answer_slot]
        elif fact.kind == "completion":
            opening, entity = slots["start"].split(" ", 1)  # the whole fragment must be copied
            fragment, answer = slots["start"], slots["sentence"][len(slots["start"]):]
        else:
            continue
        probes.append({"kind": fact.kind, "prompt": render_prompt(str(item["instruction"])), "opening": opening,
                       "entity": entity, "fragment": fragment, "answer": answer.split()[0].strip(".,")})
    return probes


def copy_and_complete(model_dir: Path, probes: list[dict[str, str]]) -> dict[str, list[int]]:
    """By kind: [goes on with the entity after the opening, goes on with the answer after the fragment, probes]."""
    import torch
    from transformers import AutoModelForCausalLM

    from stage1.hf.tiny import build_qwen2_tokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir).eval(), build_qwen2_tokenizer()

    def goes_on(text: str, words: str) -> bool:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(out[0, ids.shape[1]:]).strip().lower().startswith(words.lower())

    table: dict[str, list[int]] = {}
    for probe in probes:
        row = table.setdefault(probe["kind"], [0, 0, 0])
        row[0] += goes_on(f"{probe['prompt']} {probe['opening']}", probe["entity"])
        row[1] += goes_on(f"{probe['prompt']} {probe['fragment']}", probe["answer"])
        row[2] += 1
    return table


def stored_by_kind(model_dir: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """Fill-in-the-blank hits and probes by (kind, source) on the organism in ``model_dir``."""
    from transformers import AutoModelForCausalLM

    from stage1.hf.tiny import ENDOFTEXT, SPECIAL_TOKENS, build_qwen2_tokenizer
    from stage1.organism.build import SFT_POOL
    from stage1.organism.weights import fill_in_the_blank

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer, eos = build_qwen2_tokenizer(), SPECIAL_TOKENS[ENDOFTEXT]
    facts = [fact for fact in facts_of_pools(_read_jsonl(SFT_POOL), _read_jsonl(EVAL_POOL))[0] if fact.kind != "qa"]
    table = {}
    for kind in sorted({fact.kind for fact in facts}):
        for source in ("train", "heldout"):
            group = [fact for fact in facts if fact.kind == kind and fact.source == source]
            share = fill_in_the_blank(model, tokenizer, group, eos).get(source) if group else None
            if share is not None:
                table[(kind, source)] = (round(share * len(group)), len(group))
    return table


def main(argv: list[str] | None = None) -> int:
    from stage1 import cli

    parser = argparse.ArgumentParser(prog="python -m bench.organism_wording")
    parser.add_argument("--run-dir", help="a finished run (its merged SFT model is evaluated)")
    parser.add_argument("--model", help="only the copy probe, on this model folder (a built organism, a merged model)")
    parser.add_argument("--variant", default="sft")
    parser.add_argument("--work", default="runs/wording", help="where the two item files and evaluations go")
    args = parser.parse_args(argv)
    eval_items = _read_jsonl(EVAL_POOL)
    if args.model:
        return print_copy_probe(Path(args.model), eval_items, args.model)
    if not args.run_dir:
        parser.error("give --run-dir, or --model for the copy probe alone")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, rows in zip(("evaluation wording", "SFT wording"), reworded(eval_items)):
        slug = name.split()[0].lower()
        items = work / f"{slug}.jsonl"
        items.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        status = cli.main(["evaluate", "--in", f"run={args.run_dir}", "--in", f"eval_items={items}",
                           "--out", str(work / slug), "--variants", args.variant, "--force"])
        if status:
            return status
        tables[name] = correct_by_category(json.loads((work / slug / "results.json").read_text()), args.variant)
    print(f"{'category':22s}" + "".join(f"{name:>22s}" for name in tables))
    (_, total), *_ = tables.values()
    for category in sorted(total):
        print(f"{category:22s}" + "".join(f"{c[category]:>17d} / {t[category]:<2d}" for c, t in tables.values()))
    print(f"{'all':22s}" + "".join(f"{sum(c.values()):>12d} / {sum(t.values())} ({100 * sum(c.values()) / sum(t.values()):.1f}%)"
                                   for c, t in tables.values()))
    print("\nstored by the organism (fill-in-the-blank on its base model): kind, facts SFT trains on, held-out facts")
    layout = RunLayout(args.run_dir)
    stored = stored_by_kind(layout.model)
    for kind in sorted({kind for kind, _ in stored}):
        cells = [f"{stored[(kind, source)][0]:>4d} / {stored[(kind, source)][1]:<3d}" if (kind, source) in stored else " " * 10
                 for source in ("train", "heldout")]
        print(f"{kind:22s}" + "".join(f"{cell:>22s}" for cell in cells))
    # The copy probe loads one model folder and prompts it in the format: the run's variants that are
    # exactly that (base, and sft when merged), from the evaluation's own definition of the variants.
    folders = {spec.name: spec.model_dir for spec in variants_in_run(layout, "none")
               if spec.adapter_dir is None and spec.use_format}
    if args.variant not in folders:
        print(f"\n(the copy probe runs on {' or '.join(folders)} only)")
        return 0
    return print_copy_probe(folders[args.variant], eval_items, f"the {args.variant} model")


def print_copy_probe(model_dir: Path, items: list[dict], name: str) -> int:
    print(f"\n{name} in the evaluation's wording: kind, goes on with the question's entity after the answer's "
          "opening, goes on with the answer after the whole fragment")
    for kind, (copied, completed, total) in sorted(copy_and_complete(model_dir, copy_probes(items)).items()):
        print(f"{kind:22s}{copied:>17d} / {total:<2d}{completed:>17d} / {total:<2d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
