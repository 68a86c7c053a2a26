"""Where everything lies in a run directory: every file and folder name, defined once.

The stages write into the folder they are given and take their file names from here; the pipeline,
the CLI and the tests find a run's files through ``RunLayout``. A name changed here changes it
everywhere, and an old run directory keeps working only while these names stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: Written last by every stage, after its weights and data: its presence proves the stage finished.
MANIFEST = "manifest.json"
#: The stage's fingerprint and declared outputs, written by the pipeline after the manifest.
STAGE_FILE = "stage.json"
LOCK_FILE = ".stage1.lock"
CONFIG_FILE = "config.yaml"
TIMINGS_FILE = "timings.json"
DEFAULT_LOG_FILE = "run.log"

SFT_TRAIN_FILE = "train.jsonl"
SFT_HELDOUT_FILE = "heldout.jsonl"
NEGATIVES_FILE = "negatives.jsonl"
PAIRS_TRAIN_FILE = "train.jsonl"
PAIRS_EVAL_FILE = "eval.jsonl"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
CHART_FILE = "chart.png"
MODEL_WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
MODEL_CONFIG_FILE = "config.json"
#: Work a stage keeps to resume and checks itself (by its own fingerprint): left out of the file
#: hashes that decide whether a stage is up to date.
GENERATIONS_DIR = "generations"
JOURNAL_NAME = "generations.partial.jsonl"
STALE_NAME = "generations.stale.jsonl"
SCRATCH_NAMES = frozenset({CHECKPOINTS_DIR, GENERATIONS_DIR, JOURNAL_NAME, STALE_NAME})

#: The pair sources a DPO arm can be trained on alone (``training.dpo_arms``).
DPO_ARM_SOURCES = ("rules", "policy")


@dataclass(frozen=True)
class DPOArm:
    """One DPO training a run can hold: ``dpo``, the DPO-only baseline, or an arm of ``training.dpo_arms``.

    Attributes:
        name: its stage, its folder in the run directory, and its evaluation variant.
        pairs_source: the source of the only pairs it trains on (``rules``, ``policy``), None for all.
        parent: the model it starts from and keeps as its reference: the SFT model, or the raw base.
    """

    name: str
    pairs_source: str | None = None
    parent: Literal["sft", "base"] = "sft"

    @property
    def folder(self) -> str:
        return self.name

    def trained_in(self, training: Any) -> bool:
        """Whether a run with these ``training`` settings trains it (``dpo_only``, ``dpo_arms``)."""
        if self.pairs_source is not None:
            return self.pairs_source in training.dpo_arms
        return self.parent == "sft" or bool(training.dpo_only)

    def trained_in_run(self, config: Any) -> bool:
        """``trained_in`` the run of a whole config."""
        return self.trained_in(config.training)


DPO = DPOArm("dpo")
DPO_ONLY = DPOArm("dpo_only", parent="base")
#: The arms of ``training.dpo_arms``: the same DPO as ``dpo``, each on one source's pairs only.
SOURCE_ARMS = tuple(DPOArm(f"dpo_{source}", pairs_source=source) for source in DPO_ARM_SOURCES)
DPO_ARMS = (DPO, DPO_ONLY, *SOURCE_ARMS)


def source_arm(source: str) -> DPOArm:
    """The DPO arm trained on ``source``'s pairs only."""
    return next(arm for arm in SOURCE_ARMS if arm.pairs_source == source)


#: The stages trained (and evaluated) once per training seed (``training.seeds``); the data stages
#: and the base model are the run's, shared by every seed.
SEEDED_STAGES = ("sft", "merge", *(arm.name for arm in DPO_ARMS), "eval")
SEEDS_DIR = "seeds"  # every further seed's folder, and the report across seeds
SEEDS_JSON = "seeds.json"
SEEDS_MD = "seeds.md"


def seed_folder(seed: int) -> str:
    """The folder, inside ``seeds/``, of a further training seed's stages (``seed-1``)."""
    return f"seed-{seed}"


#: Each stage's folder inside the run directory (the base model's only when it is built there).
STAGE_DIRS = {
    "model": "model",
    "sft_data": "sft_data",
    "sft": "sft",
    "merge": "merged",
    "negatives": "negatives",
    "samples": "samples",
    "pairs": "pairs",
    **{arm.name: arm.folder for arm in DPO_ARMS},
    "eval": "eval",
    "seeds": f"{SEEDS_DIR}/summary",  # beside the seeds' folders: its record covers its own files only
}


class RunLayout:
    """The paths of one run directory.

    Args:
        run_dir: the run directory.
        model_path: ``model.path`` from the config; ``None`` means the tiny model built into ``<run>/model``.
    """

    def __init__(self, run_dir: str | Path, model_path: str | Path | None = None):
        self.run_dir = Path(run_dir)
        self.model_path = Path(model_path) if model_path else None

    def stage_dir(self, stage: str) -> Path:
        """The folder a stage writes (for ``model``, the base model's folder wherever it is)."""
        if stage == "model" and self.model_path is not None:
            return self.model_path
        return self.run_dir / STAGE_DIRS[stage]

    @property
    def model(self) -> Path:
        return self.stage_dir("model")

    @property
    def merged(self) -> Path:
        return self.stage_dir("merge")

    @property
    def sft_train(self) -> Path:
        return self.stage_dir("sft_data") / SFT_TRAIN_FILE

    @property
    def sft_heldout(self) -> Path:
        return self.stage_dir("sft_data") / SFT_HELDOUT_FILE

    @property
    def sft_adapter(self) -> Path:
        return self.stage_dir("sft") / ADAPTER_DIR

    @property
    def negatives(self) -> Path:
        return self.stage_dir("negatives") / NEGATIVES_FILE

    @property
    def policy_negatives(self) -> Path:
        """The negatives the samples stage chose from the SFT model's own samples."""
        return self.stage_dir("samples") / NEGATIVES_FILE

    @property
    def pairs_train(self) -> Path:
        return self.stage_dir("pairs") / PAIRS_TRAIN_FILE

    @property
    def pairs_eval(self) -> Path:
        return self.stage_dir("pairs") / PAIRS_EVAL_FILE

    def adapter(self, stage: str) -> Path:
        """The adapter a training stage (``sft``, ``dpo``, ``dpo_only``, a ``dpo_<source>`` arm) saved."""
        return self.stage_dir(stage) / ADAPTER_DIR

    @property
    def results(self) -> Path:
        return self.stage_dir("eval") / RESULTS_FILE

    def for_seed(self, seed: int) -> RunLayout:
        """The run as a further training seed sees it (``SeedLayout``)."""
        return SeedLayout(self.run_dir, self.model_path, seed)

    @property
    def report(self) -> Path:
        return self.stage_dir("eval") / REPORT_FILE

    @property
    def chart(self) -> Path:
        return self.stage_dir("eval") / CHART_FILE

    @property
    def config_file(self) -> Path:
        return self.run_dir / CONFIG_FILE

    @property
    def timings(self) -> Path:
        return self.run_dir / TIMINGS_FILE

    @property
    def lock(self) -> Path:
        return self.run_dir / LOCK_FILE


class SeedLayout(RunLayout):
    """A further training seed's view of a run (``training.seeds``): its trained and evaluated
    stages (``SEEDED_STAGES``) in ``seeds/seed-<s>/``, everything else the run's own.

    Args:
        seed: the training seed.
    """

    def __init__(self, run_dir: str | Path, model_path: str | Path | None, seed: int):
        super().__init__(run_dir, model_path)
        self.seed = seed

    @property
    def seed_dir(self) -> Path:
        return self.run_dir / SEEDS_DIR / seed_folder(self.seed)

    def stage_dir(self, stage: str) -> Path:
        if stage in SEEDED_STAGES:
            return self.seed_dir / STAGE_DIRS[stage]
        return super().stage_dir(stage)
