"""TRL's DPOTrainer, taking our token ids as they are.

Kept apart from ``stage1.train.dpo`` because it subclasses ``trl.DPOTrainer`` at import time: the
stage module stays importable without trl (the CLI's ``--help`` and the fast tests import it).
"""

from __future__ import annotations

import logging
from typing import Any

from trl import DPOTrainer

from stage1.train.reference_cache import COLUMNS, read_cached, write_cached

log = logging.getLogger(__name__)


class PreTokenizedDPOTrainer(DPOTrainer):
    """A DPOTrainer that takes ``prompt_ids``/``chosen_ids``/``rejected_ids`` rows as they are (TRL
    would re-tokenize text itself, parsing ``<|endoftext|>`` typed in data as the control token).

    Args:
        reference_cache: ``{"parts": {split: key parts}, "paths": {split: path}}`` (see
            ``stage1.train.reference_cache``): precomputed reference log-probabilities are read from
            ``paths[split]`` when there, and written there when TRL computes them.
        **kwargs: as ``DPOTrainer``.
    """

    def __init__(self, *args, reference_cache: dict[str, Any] | None = None, **kwargs):
        # Set before DPOTrainer.__init__, which precomputes the reference log-probabilities.
        self.stage1_reference_cache = reference_cache
        self.stage1_reference_cache_hits = 0
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        missing = {"prompt_ids", "chosen_ids", "rejected_ids"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"the {dataset_name} rows lack {sorted(missing)}; build them with build_preference_rows")
        return dataset

    def log(self, logs, start_time=None):
        # TRL logs rewards = beta * (log pi - log pi_ref) and the policy's own log-probs, but not
        # the shift itself; dividing by beta here puts it in every logged step (and eval) as
        # logps/chosen_shift and logps/rejected_shift, averaged like TRL's own metrics.
        metrics = self._metrics["train" if self.model.training else "eval"]
        for side in ("chosen", "rejected"):
            if metrics.get(f"rewards/{side}"):
                metrics[f"logps/{side}_shift"] = [value / self.beta for value in metrics[f"rewards/{side}"]]
        super().log(logs, start_time)

    def _precompute_ref_logps(self, dataset, name, batch_size):

        cache = self.stage1_reference_cache
        path = None if cache is None else cache["paths"].get(name)
        if path is None:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        cached = read_cached(path, len(dataset), cache["parts"][name])
        if cached is not None:
            log.info("reference log-probabilities for %s read from %s", name, path)
            self.stage1_reference_cache_hits += 1
            for column in COLUMNS:
                dataset = dataset.add_column(column, cached[column])
            return dataset
        computed = super()._precompute_ref_logps(dataset, name, batch_size)
        if self.accelerator.is_main_process:
            write_cached(path, cache["parts"][name], {column: computed[column] for column in COLUMNS})
        return computed
