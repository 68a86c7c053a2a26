"""stage1 command line: one subcommand per stage, and ``run`` for all of them.

This file is the only place that parses flags, prints and chooses exit codes. Heavy imports
(torch, transformers, trl) happen inside commands, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_TINY_DIR = Path("runs/tiny-qwen")


def _console():
    from rich.console import Console

    return Console()


def cmd_build_tiny(args: argparse.Namespace) -> int:
    from stage1.storage import sha256_file
    from stage1.tiny import build_tiny_qwen

    out = build_tiny_qwen(args.out, seed=args.seed)
    _console().print(f"tiny Qwen2 written to [bold]{out}[/] (weights sha256 {sha256_file(out / 'model.safetensors')[:16]}…)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text
    from transformers import AutoTokenizer

    from stage1.masking import IGNORE_INDEX, build_sft_features
    from stage1.tiny import build_tiny_qwen

    model_dir = Path(args.model)
    if not (model_dir / "tokenizer.json").exists():
        build_tiny_qwen(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    features = build_sft_features(tokenizer, args.instruction, args.response, args.max_length)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stage1", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    build = commands.add_parser("build-tiny", help="build the tiny offline Qwen2 model")
    build.add_argument("--out", type=Path, default=DEFAULT_TINY_DIR)
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(handler=cmd_build_tiny)

    inspect = commands.add_parser("inspect", help="show one example's tokens coloured by supervised/masked")
    inspect.add_argument("--model", default=str(DEFAULT_TINY_DIR))
    inspect.add_argument("--instruction", default="What is the capital of France?")
    inspect.add_argument("--response", default="Paris is the capital of France.")
    inspect.add_argument("--max-length", type=int, default=512)
    inspect.set_defaults(handler=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        args = parser.parse_args(["inspect"] + (argv or []))
    from stage1.errors import Stage1Error
    from stage1.format import FormatError

    try:
        return args.handler(args)
    except (Stage1Error, FormatError) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted; outputs written so far are complete and the next run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
