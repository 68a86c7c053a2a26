"""The commands that show rather than run: ``plan`` (memory and steps) and ``inspect`` (one example's tokens)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from stage1.cli_parser import DEFAULT_RUN_DIR
from stage1.cli_parser import console as _console
from stage1.stages.config import load_config


def cmd_plan(args: argparse.Namespace) -> int:
    from stage1.core.errors import ConfigError
    from stage1.hf.memplan import plan_for_config, plan_table
    from stage1.train.step_plan import plan_steps_for_config

    if args.gpu_gib is not None and not (math.isfinite(args.gpu_gib) and args.gpu_gib > 0):
        raise ConfigError(f"must be a finite number of GiB > 0, got {args.gpu_gib}", field="--gpu-gib", hint="e.g. --gpu-gib 80")
    console = _console()
    config = load_config(args.config, args.set)
    plan = plan_for_config(config, gpu_gib=args.gpu_gib)
    console.print(plan_table(plan))
    _print_steps(console, config, plan_steps_for_config(config))
    problems = plan.problems()
    for problem in problems:
        console.print(f"[red]does not fit[/]: {problem}")
    return 2 if problems else 0


def _print_steps(console, config, plans) -> None:
    """Each training stage's optimizer steps on a line of its own, then any warning about them."""
    if not plans:
        console.print(f"sft, dpo: optimizer steps unknown until the instruction pool exists ({config.data.instructions})",
                      markup=False, highlight=False)
    for steps in plans:
        console.print(steps.summary(), markup=False, highlight=False)
    for steps in plans:
        if steps.warning():
            console.print(f"[yellow]too few steps[/]: {steps.warning()}", highlight=False)


def _check_inspect_model(model_dir: Path) -> None:
    """Refuse a folder without a tokenizer: inspect reads a model, it never builds one.

    Raises:
        InputError: naming the folder and the commands that make one.
    """
    from stage1.core.errors import InputError

    make = f"build the tiny one with `stage1 build-tiny --out {model_dir}`, or give --model a model folder"
    if model_dir == DEFAULT_RUN_DIR / "model":
        make += " (`stage1 run` also builds runs/tiny/model)"
    if not model_dir.is_dir():
        raise InputError("model folder not found", path=model_dir, field="--model", hint=make)
    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "tokenizer_config.json").is_file():
        raise InputError("not a model folder: no tokenizer.json or tokenizer_config.json", path=model_dir, field="--model", hint=make)


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text
    from transformers import AutoTokenizer

    from stage1.core.errors import InputError
    from stage1.core.masking import IGNORE_INDEX, MaskingError, build_sft_features

    if args.max_length < 2:
        raise InputError(f"must be at least 2 (a prompt token and eos), got {args.max_length}", field="--max-length")
    model_dir = Path(args.model)
    _check_inspect_model(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    try:
        features = build_sft_features(tokenizer, args.instruction, args.response, args.max_length)
    except MaskingError as error:
        # Training drops or refuses such a row (training.overlong); here there is only one row to show.
        raise InputError(str(error), field="--max-length", hint="raise --max-length or shorten the text") from None
    console = _console()
    line = Text()
    table = Table("pos", "id", "token", "label", title="tokens: [red]masked (-100)[/] / [green]supervised[/]")
    for position, (token_id, label) in enumerate(zip(features.input_ids, features.labels)):
        piece = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
        style = "red" if label == IGNORE_INDEX else "bold green"
        line.append(piece, style=style)
        table.add_row(str(position), str(token_id), repr(piece), str(label), style=style)
    console.print(table)
    console.print(line)
    supervised = sum(label != IGNORE_INDEX for label in features.labels)
    console.print(f"{len(features.input_ids)} tokens, {supervised} supervised (response, END and eos)")
    return 0
