"""TRL packing (bfd, padding-free with position ids) keeps our masks and keeps rows apart."""

from __future__ import annotations

import pytest
import torch
from tiny_training import LORA_ARGS, SFT_ROWS

from stage1.core.masking import IGNORE_INDEX
from stage1.core.records import SFTExample
from stage1.hf.lora import build_lora_config
from stage1.hf.models import load_model
from stage1.train.data import build_sft_rows
from stage1.train.run import build_config
from stage1.train.settings import TrainingSettings
from stage1.train.sft import build_sft_trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows(qwen_tokenizer) -> list[dict]:
    examples = [SFTExample(id=str(i), instruction=a, response=b) for i, (a, b) in enumerate(SFT_ROWS)]
    return build_sft_rows(qwen_tokenizer, examples, max_length=64, overlong="error", source="rows").rows


@pytest.fixture(scope="module")
def packed_batches(tiny_model_dir, qwen_tokenizer, rows, tmp_path_factory) -> list[dict]:
    from trl import SFTConfig

    args = {"packing": True, "packing_strategy": "bfd", "max_length": 64, "per_device_train_batch_size": 2, "save_strategy": "no"}
    config = build_config(SFTConfig, args, "sft", TrainingSettings(), "cpu", tmp_path_factory.mktemp("packing"), 0)
    trainer = build_sft_trainer(model=load_model(tiny_model_dir), tokenizer=qwen_tokenizer, rows=rows, sft_config=config,
                                lora_config=build_lora_config(LORA_ARGS))
    return list(trainer.get_train_dataloader())


def _segments(batch: dict) -> list[tuple[list[int], list[int], list[int]]]:
    """(ids, labels, positions) of each row in a padding-free batch, split where the position id restarts."""
    ids, labels, positions = (batch[k][0].tolist() for k in ("input_ids", "labels", "position_ids"))
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [(ids[a:b], labels[a:b], positions[a:b]) for a, b in zip(starts, starts[1:])]


def test_packed_batches_are_padding_free_with_position_ids(packed_batches):
    for batch in packed_batches:
        assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
        assert batch["position_ids"].shape == batch["input_ids"].shape


def test_packed_labels_are_the_concatenated_row_labels_and_positions_restart(packed_batches, rows):
    by_ids = {tuple(r["input_ids"]): r for r in rows}
    seen = []
    for batch in packed_batches:
        segments = _segments(batch)
        assert len(segments) > 1, "a packed batch holds several rows"
        expected_labels = []
        for ids, _labels, positions in segments:
            row = by_ids[tuple(ids)]
            assert positions == list(range(len(ids))), "position ids restart at 0 for every row"
            expected_labels += row["labels"]
            seen.append(tuple(ids))
        assert batch["labels"][0].tolist() == expected_labels
    assert sorted(seen) == sorted(by_ids), "every row appears exactly once per epoch"


def test_packed_rows_do_not_attend_to_each_other(packed_batches, rows, tiny_model_dir):
    """The summed loss of a packed batch equals the sum over its rows run one by one (block-diagonal attention)."""
    model = load_model(tiny_model_dir)
    loss = torch.nn.CrossEntropyLoss(reduction="sum", ignore_index=IGNORE_INDEX)

    def summed(input_ids, labels, position_ids=None):
        # use_cache=False as in training (TRL sets it): with a cache, transformers skips the packed-row mask.
        with torch.no_grad():
            logits = model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
        return loss(logits[0, :-1], labels[0, 1:]).item()

    batch = packed_batches[0]
    packed = summed(batch["input_ids"], batch["labels"], batch["position_ids"])
    separate = sum(summed(torch.tensor([ids]), torch.tensor([labels])) for ids, labels, _ in _segments(batch))
    assert packed == pytest.approx(separate, rel=1e-5)
    # Without position ids the rows would see each other and the loss would differ.
    leaky = summed(batch["input_ids"], batch["labels"])
    assert leaky != pytest.approx(separate, rel=1e-5)
