"""Shared by the training tests: a small SFT set, small preference pairs, and cached tiny runs.

Training the tiny model takes seconds per dozen steps on two cores, so one SFT run (and one merge
of it) is made per test session and shared by the SFT, merge and DPO tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from stage1.core.format import render_completion, render_prompt

_RUNS: dict[tuple[str, str], Path] = {}

#: Short instruction/response pairs; the tiny model learns to end them with END within ~40 steps.
SFT_ROWS = [
    ("What is the capital of France?", "Paris."),
    ("Name a primary colour.", "Red."),
    ("What is two plus two?", "Four."),
    ("Give a synonym for happy.", "Glad."),
    ("What is the opposite of hot?", "Cold."),
    ("Name a planet in the solar system.", "Mars."),
    ("What do bees make?", "Honey."),
    ("What colour is the sky on a clear day?", "Blue."),
    ("Which animal barks?", "A dog."),
    ("What is frozen water called?", "Ice."),
    ("How many legs does a spider have?", "Eight."),
    ("What is the largest ocean?", "The Pacific."),
    ("Write the word cat backwards.", "tac"),
    ("Name a fruit that is yellow.", "A banana."),
    ("What is the first letter of the alphabet?", "A."),
    ("What gas do plants take in?", "Carbon dioxide."),
]

#: 20 steps at batch 8 (10 epochs of 16 rows): ~15 s on two cores; the model then ends with END.
SFT_TRAIN_ARGS = {
    "per_device_train_batch_size": 8,
    "max_steps": 20,
    "learning_rate": 3e-3,
    "lr_scheduler_type": "constant",
    "max_length": 64,
    "save_steps": 10,
    "logging_steps": 1,
}
LORA_ARGS = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}


def write_sft_rows(path: Path, rows=SFT_ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for index, (instruction, response) in enumerate(rows):
            handle.write(json.dumps({"id": f"r{index}", "instruction": instruction, "response": response}) + "\n")
    return path


def prompts(rows=SFT_ROWS) -> list[str]:
    return [render_prompt(instruction) for instruction, _ in rows]


def completions(rows=SFT_ROWS) -> list[str]:
    return [render_completion(response) for _, response in rows]


def _rejected(kind: str, index: int, rows) -> str:
    response = rows[index][1]
    if kind == "unwarranted_refusal":
        return render_completion("I am sorry, but I cannot help with that.")
    if kind == "format_violation":
        return " " + response  # no END line: the model would run on
    if kind == "factually_incorrect":
        return render_completion(rows[(index + 1) % len(rows)][1])
    if kind == "off_topic":
        return render_completion("The weather is pleasant in spring.")
    return render_completion("It depends on many factors, and there are various aspects to consider here.")


PAIR_KINDS = ("unwarranted_refusal", "format_violation", "factually_incorrect", "off_topic", "verbose_vague")


def pair_dicts(rows=SFT_ROWS, eval_every: int = 4) -> dict[str, list[dict]]:
    """One pair per row, kinds in rotation; every ``eval_every``-th instruction goes to eval."""
    splits: dict[str, list[dict]] = {"train": [], "eval": []}
    for index, (instruction, response) in enumerate(rows):
        kind = PAIR_KINDS[index % len(PAIR_KINDS)]
        split = "eval" if index % eval_every == eval_every - 1 else "train"
        splits[split].append(
            {
                "prompt": render_prompt(instruction),
                "chosen": render_completion(response),
                "rejected": _rejected(kind, index, rows),
                "instruction_id": f"r{index}",
                "category": "general",
                "negative_kind": kind,
                "split": split,
            }
        )
    return splits


def write_pairs(folder: Path, rows=SFT_ROWS) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, items in pair_dicts(rows).items():
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


DPO_TRAIN_ARGS = {
    "per_device_train_batch_size": 4,
    "max_steps": 6,
    "learning_rate": 5e-3,
    "lr_scheduler_type": "constant",
    "beta": 0.1,
    "max_length": 64,
    "save_steps": 3,
    "logging_steps": 1,
}


def sft_run(model_dir: Path, tmp_path_factory) -> Path:
    """The shared tiny SFT run (out_dir with adapter/, manifest.json, log_history.json); made once per session."""
    from stage1.train.settings import TrainingSettings
    from stage1.train.sft import run_train_sft

    key = ("sft", str(model_dir))
    if key not in _RUNS:
        root = tmp_path_factory.mktemp("sft-run")
        train = write_sft_rows(root / "data" / "train.jsonl")
        settings = TrainingSettings(sample_every_steps=10, sample_prompts=2, sample_max_new_tokens=8)
        run_train_sft(settings, model_dir=model_dir, train_path=train, out_dir=root / "sft", sft_args=SFT_TRAIN_ARGS, lora_args=LORA_ARGS)
        _RUNS[key] = root / "sft"
    return _RUNS[key]


def merged_run(model_dir: Path, tmp_path_factory) -> Path:
    """The shared SFT run merged into the tiny base (fp32); made once per session."""
    from stage1.train.merge import run_merge
    from stage1.train.settings import TrainingSettings

    key = ("merged", str(model_dir))
    if key not in _RUNS:
        adapter = sft_run(model_dir, tmp_path_factory) / "adapter"
        out = tmp_path_factory.mktemp("merged-run") / "merged"
        run_merge(TrainingSettings(), model_dir=model_dir, adapter_dir=adapter, out_dir=out)
        _RUNS[key] = out
    return _RUNS[key]


def train_file(run_dir: Path) -> Path:
    """The training file of the shared SFT run."""
    return run_dir.parent / "data" / "train.jsonl"
