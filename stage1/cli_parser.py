"""The command line's flags and help: one subcommand per stage, ``run``, and the file-only commands.

Light to import (no torch, no rich), so ``stage1 --help`` answers at once. The shipped presets in
``--config``'s help are read from the presets folder, so a new preset file is listed without an edit here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from stage1.config.presets import DEFAULT_PRESET, PRESETS_DIR, input_path, shipped_pools
from stage1.core.errors import ConfigError
from stage1.stages import STAGE_COMMANDS, STAGES_BY_NAME, inputs_help

DEFAULT_RUN_DIR = Path("runs/tiny")
Handler = Callable[[argparse.Namespace], int]


def console():
    """The console every command prints to (rich's import is deferred: `--help` answers without it)."""
    from rich.console import Console

    return Console()


def preset_names() -> list[str]:
    """The shipped presets' names (``--config NAME``): every ``*.yaml`` in the presets folder."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def config_help() -> str:
    return (f"a shipped preset ({', '.join(preset_names())}; default {DEFAULT_PRESET}; they live in {PRESETS_DIR}) "
            "or the path of a YAML file of your own")


def _add_config_flags(parser: argparse.ArgumentParser, example: str = "dpo.beta=0.2") -> None:
    parser.add_argument("--config", default=None, metavar="NAME|FILE", help=config_help())
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one setting of the config, e.g. --set {example} (repeat for more)")
    _add_debug(parser)


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (and debug log lines)")


def add_golden_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--against", default=None, metavar="GOLDEN.json",
                         help="report significant changes against this result in either direction; exit 1 if a criterion regressed")
    command.add_argument("--golden-alpha", type=float, default=0.01, metavar="P",
                         help="with --against: the McNemar p-value at or below which a change is significant (default 0.01)")
    command.add_argument("--golden-min-drop", type=float, default=0.05, metavar="RATE",
                         help="with --against: the smallest significant drop in rate that fails (default 0.05, 5 points)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    _add_config_flags(parser)
    parser.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR), help="where every stage reads and writes (default: %(default)s)")
    parser.add_argument("--force", nargs="?", const="all", action="append", metavar="STAGE",
                        help="rerun STAGE (or, alone, every stage) even when it is up to date; repeat for more")
    parser.add_argument(
        "--verify", action="store_true",
        help="hash every file the stages read and wrote again, instead of trusting files whose size and "
        "modification time match their stage.json (finds a file changed with its time kept)",
    )


def _add_stage_commands(commands, handler: Handler) -> None:
    for name, stage in STAGE_COMMANDS.items():
        command = commands.add_parser(
            name, help=f"{STAGES_BY_NAME[stage].help} (alone: in --run-dir, or on --in/--out files)",
            description=f"The {stage} stage alone: {STAGES_BY_NAME[stage].help}. Inside --run-dir its upstream stages must be done; "
            "with --in NAME=PATH ... --out DIR it runs on those files.",
            epilog=inputs_help(stage), formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(command)
        command.add_argument("--in", dest="inputs", action="append", metavar="NAME=PATH",
                             help=f"an input file for this stage; it reads: {', '.join(item.name for item in STAGES_BY_NAME[stage].inputs)} "
                             f"(see below); {', '.join(shipped_pools())} name the shipped pools")
        command.add_argument("--out", default=None, help="output folder when running on explicit --in files (a new folder)")
        if name == "evaluate":
            add_golden_flags(command)
            command.add_argument("--variants", default=None, metavar="NAMES", help="comma-separated subset of base_raw,base,sft,dpo,dpo_only (and dpo_rules,dpo_policy with training.dpo_arms)")
            command.add_argument("--dry-run", action="store_true", help="load each variant and report memory, generate nothing")
            command.add_argument("--save-golden", default=None, metavar="GOLDEN.json", help="save this evaluation as a golden result")
        command.set_defaults(handler=handler)


def _add_file_commands(commands, handlers: dict[str, Handler]) -> None:
    pools = f"a file, or a shipped pool by name: {', '.join(shipped_pools())}"
    score = commands.add_parser("score", help="score responses generated anywhere: --in items=FILE --in responses=FILE --out DIR")
    _add_config_flags(score, "eval.q=0.1")
    score.add_argument("--in", dest="inputs", action="append", metavar="NAME=PATH",
                       help=f"items=ITEMS.jsonl and responses=RESPONSES.jsonl (rows of item_id, variant, response); {pools}")
    score.add_argument("--out", required=True, help="folder for results.json, report.md, chart.png and the manifest")
    add_golden_flags(score)
    score.set_defaults(handler=handlers["score"])

    leakage = commands.add_parser("check-leakage", help="the leakage gate on any training files: --in train=FILE ... --in eval_items=FILE")
    _add_config_flags(leakage, "pairs.leakage.paraphrase_extra_words=2")
    leakage.add_argument("--in", dest="inputs", action="append", metavar="NAME=PATH",
                         help=f"train=FILE (SFT rows, pairs or instructions; repeat for more) and eval_items=FILE; {pools}")
    leakage.set_defaults(handler=handlers["check-leakage"])


def _add_tool_commands(commands, handlers: dict[str, Handler]) -> None:
    plan = commands.add_parser("plan", help="estimate peak GPU memory and optimizer steps per stage before anything loads")
    _add_common(plan)
    plan.add_argument("--gpu-gib", type=float, default=None, help="GPU memory to plan for (default: from the preset)")
    plan.set_defaults(handler=handlers["plan"])

    build = commands.add_parser("build-tiny", help="build the tiny offline Qwen2 model (random weights, or the organism)")
    build.add_argument("--out", type=Path, default=DEFAULT_RUN_DIR / "model", help="the model folder to write (default: %(default)s)")
    build.add_argument("--kind", choices=("random", "organism"), default="random",
                       help="random weights (seconds), or the model organism the tiny preset runs on, pretrained on the "
                            "pools' facts (about 2 minutes on 2 cores, or copied from $STAGE1_CACHE) (default: %(default)s)")
    build.add_argument("--seed", type=int, default=0, help="seed of the random weights, or of the organism's corpus and training (default: %(default)s)")
    _add_debug(build)
    build.set_defaults(handler=handlers["build-tiny"])

    inspect = commands.add_parser("inspect", help="show one example's tokens coloured by supervised/masked")
    inspect.add_argument("--model", default=str(DEFAULT_RUN_DIR / "model"), help="a model folder (its tokenizer is used); default: the tiny run's")
    inspect.add_argument("--instruction", default="What is the capital of France?", help="the instruction to format (default: %(default)r)")
    inspect.add_argument("--response", default="Paris is the capital of France.", help="the response to format (default: %(default)r)")
    inspect.add_argument("--max-length", type=int, default=512, help="tokens kept, as training.max_length would (default: %(default)s)")
    _add_debug(inspect)
    inspect.set_defaults(handler=handlers["inspect"])


def build_parser(handlers: dict[str, Handler], description: str) -> argparse.ArgumentParser:
    """The whole command line; ``handlers`` maps ``run``, ``stage`` (every stage command) and each
    other command to the function that runs it."""
    parser = argparse.ArgumentParser(prog="stage1", description=description)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="every stage in order on the chosen preset (default: the tiny model)")
    _add_common(run)
    run.set_defaults(handler=handlers["run"])
    _add_stage_commands(commands, handlers["stage"])
    _add_file_commands(commands, handlers)
    _add_tool_commands(commands, handlers)
    return parser


# ---------------------------------------------------------------- the values of --in NAME=PATH


def _split_input(text: str) -> tuple[str, str]:
    """``NAME=PATH`` as its two halves.

    Raises:
        ConfigError: not NAME=PATH, or no path after the ``=``.
    """
    name, sep, path = text.partition("=")
    if not sep:
        raise ConfigError(f"--in {text!r} is not NAME=PATH", field="--in")
    if not path.strip():
        raise ConfigError(f"names no file (--in {text!r})", field=f"--in {name}", hint=f"give --in {name}=PATH")
    return name, path


def named_inputs(args: argparse.Namespace) -> dict[str, Path]:
    """A stage command's ``--in NAME=PATH`` values, one file per name (the stage checks the names).

    Raises:
        ConfigError: not NAME=PATH, or a name given twice.
    """
    named: dict[str, Path] = {}
    for text in args.inputs or []:
        name, path = _split_input(text)
        if name in named:
            raise ConfigError(
                f"--in {name}= is given twice ({named[name]} and {path})", field="--in", hint="give each input once"
            )
        named[name] = input_path(path)
    return named


def inputs_by_name(args: argparse.Namespace, allowed: dict[str, bool]) -> dict[str, list[Path]]:
    """A file command's ``--in NAME=PATH`` values by name; ``allowed`` maps each name to whether it may repeat.

    Raises:
        ConfigError: not NAME=PATH, an unknown name, a missing one, or a single one given twice.
    """
    named: dict[str, list[Path]] = {name: [] for name in allowed}
    for text in args.inputs or []:
        name, path = _split_input(text)
        if name not in allowed:
            raise ConfigError(f"`{args.command}` reads no input named {name!r}", field="--in", hint=f"it takes: {', '.join(allowed)}")
        if named[name] and not allowed[name]:
            raise ConfigError(f"--in {name}= is given twice ({named[name][0]} and {path})", field="--in", hint="give it once")
        named[name].append(input_path(path))
    missing = [name for name, paths in named.items() if not paths]
    if missing:
        raise ConfigError(f"missing --in {'=, --in '.join(missing)}=", field="--in",
                          hint=" ".join(f"--in {name}=FILE" for name in allowed))
    return named
