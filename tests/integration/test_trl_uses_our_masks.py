"""TRL's SFTTrainer trains on exactly our labels: read its own first batch and compare."""

from __future__ import annotations

import pytest
import torch

from stage1.core.masking import IGNORE_INDEX, build_sft_features

EXAMPLES = [
    ("What is the capital of France?", "Paris is the capital."),
    ("Explain 'Response: X' in one line.", "It is a label."),
    ("List three colours.", "Red\nGreen\nBlue"),
    ("Write code.", "```python\nprint('hi')\n```"),
]


def _trainer(tiny_model_dir, qwen_tokenizer, tmp_path, rows):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=len(rows),
        max_length=256,
        report_to=[],
        use_cpu=True,
        dataset_num_proc=None,
        shuffle_dataset=False,
        save_strategy="no",
        logging_strategy="no",
    )
    return SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=qwen_tokenizer)


def test_first_batch_labels_equal_ours(tiny_model_dir, qwen_tokenizer, tmp_path):
    features = [build_sft_features(qwen_tokenizer, i, r, 256).to_dict() for i, r in EXAMPLES]
    trainer = _trainer(tiny_model_dir, qwen_tokenizer, tmp_path, features)
    batch = next(iter(trainer.get_train_dataloader()))
    rows = list(zip(batch["input_ids"].tolist(), batch["labels"].tolist()))
    assert len(rows) == len(features)
    for row in features:
        # The sampler may reorder rows and the collator right-pads them: find ours by its ids.
        width = len(row["input_ids"])
        matches = [labels for ids, labels in rows if ids[:width] == row["input_ids"]]
        assert len(matches) == 1
        assert matches[0][:width] == row["labels"], "TRL changed our labels"
        assert all(label == IGNORE_INDEX for label in matches[0][width:]), "padding must not be trained"


def test_loss_with_our_mask_differs_from_all_token_loss(tiny_model_dir, qwen_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    row = build_sft_features(qwen_tokenizer, *EXAMPLES[0], 256)
    ids = torch.tensor([row.input_ids])
    with torch.no_grad():
        masked = model(input_ids=ids, labels=torch.tensor([row.labels])).loss
        everything = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(masked) and torch.isfinite(everything)
    # A random model is near-uniform, so the two means differ little: check each against the
    # per-token losses it must average instead of a relative gap.
    logits = model(input_ids=ids).logits[0, :-1].detach()
    per_token = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
    supervised = torch.tensor(row.labels[1:]) != -100
    assert 0 < supervised.sum() < len(supervised)
    assert masked.item() == pytest.approx(per_token[supervised].mean().item(), rel=1e-6)
    assert everything.item() == pytest.approx(per_token.mean().item(), rel=1e-6)
    assert per_token[supervised].mean().item() != per_token.mean().item()
