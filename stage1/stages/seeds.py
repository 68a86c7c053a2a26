"""Training seeds (``training.seeds``): the stages a run trains and evaluates once per seed.

The run's own folders hold the training of ``run.seed``, which the list must name. Each further
seed's ``sft``, ``merge``, ``dpo``, ``dpo_only``, DPO arms and ``eval`` run again from the run's own
data stages and base model (the same SFT examples, negatives and pairs: only training draws anew),
with ``run.seed`` set to that seed, into ``seeds/seed-<s>/``. Each is a step of its own, named
``seed-<s>/<stage>``, with its own fingerprint, record, resume and staleness; ``--force sft`` reruns
every seed's SFT, ``--force seed-1/sft`` that seed's alone. The ``seeds`` stage then reads every
seed's evaluation together. A list of one seed (or none) is the run as without the setting.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from stage1.core.errors import ConfigError
from stage1.eval import spec as eval_spec
from stage1.io.layout import SEEDED_STAGES, RunLayout, seed_folder
from stage1.io.stage_spec import StageSpec
from stage1.stages.config import PipelineConfig
from stage1.stages.table import STAGES


@dataclass(frozen=True)
class PlannedStage:
    """A stage as one run runs it: the table's spec with the config and layout of its training seed.

    Attributes:
        prefix: ``seed-<s>/`` for a further seed's stage, "" for the run's own.
    """

    spec: StageSpec
    config: PipelineConfig
    layout: RunLayout
    prefix: str = ""

    def rename(self, stage: str) -> str:
        """The step name of ``stage`` as this stage's seed sees it: its own seed's for a seeded stage."""
        return f"{self.prefix}{stage}" if self.prefix and stage in SEEDED_STAGES else stage

    @property
    def name(self) -> str:
        return self.rename(self.spec.name)


def check_seeds(config: PipelineConfig) -> None:
    """A seed list names ``run.seed``, whose training the run's own folders hold.

    Raises:
        ConfigError: naming ``training.seeds``, ``run.seed`` and a list that would do.
    """
    seeds, own = config.training.seeds, config.run.seed
    if seeds and own not in seeds:
        raise ConfigError(
            f"lists the run's training seeds, the run's own (run.seed = {own}) among them; got {list(seeds)}", field="training.seeds",
            hint=f"add {own} (e.g. training.seeds=[{', '.join(map(str, (own, *seeds)))}]), or set run.seed to one of them",
        )


def planned_stages(config: PipelineConfig, layout: RunLayout) -> list[PlannedStage]:
    """Every stage this run runs, in order: the table's enabled stages, and before ``seeds`` each
    further training seed's trained and evaluated stages.

    Raises:
        ConfigError: ``check_seeds``.
    """
    check_seeds(config)
    enabled = [spec for spec in STAGES if spec.enabled(config)]
    planned: list[PlannedStage] = []
    for spec in enabled:
        if spec.name == eval_spec.SEEDS:
            planned += [stage for seed in config.training.seeds if seed != config.run.seed
                        for stage in _seed_stages(config, layout, enabled, seed)]
        planned.append(PlannedStage(spec, config, layout))
    return planned


def _seed_stages(config: PipelineConfig, layout: RunLayout, enabled: list[StageSpec], seed: int) -> list[PlannedStage]:
    """One further seed's stages: ``run.seed`` (the trainers' seed) set to it, its folders in ``seeds/seed-<s>/``."""
    seed_config = dataclasses.replace(config, run=dataclasses.replace(config.run, seed=seed))
    seed_layout = layout.for_seed(seed)
    stages = []
    for spec in enabled:
        if spec.name not in SEEDED_STAGES:
            continue
        if spec.name == eval_spec.STAGE:  # the seed's own models, not the run's
            spec = dataclasses.replace(spec, entry=functools.partial(eval_spec.evaluate, layout=seed_layout))
        stages.append(PlannedStage(spec, seed_config, seed_layout, f"{seed_folder(seed)}/"))
    return stages
