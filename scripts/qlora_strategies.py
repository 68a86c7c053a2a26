"""Measure how much of the SFT gain each QLoRA hand-off keeps, on the tiny model in nf4 on CPU.

    python scripts/qlora_strategies.py --lr 5e-5 --steps 20
    python scripts/qlora_strategies.py --lr 3e-3 --steps 40   # the tiny preset's SFT settings

Trains one nf4 SFT adapter on the fixture pool (the tiny preset's data), then loads the SFT model
the way each strategy hands it to DPO and evaluation and scores it with ``stage1.train.handoff`` on the
first 64 SFT training rows (mean token loss -> share of the SFT gain kept) and the merge probes
(largest logit difference against the trained model: nf4 base + live adapter):

- merge 16bit -> nf4: merged into the fp32 base, reloaded in nf4 (a fresh quantisation);
- merge dequantized_nf4 -> nf4: merged into the dequantised nf4 weights, reloaded in nf4;
- merge 16bit, held in 16-bit: what 16-bit DPO on the merged model would train on;
- adapter kept (training.sft_handoff: adapter): the nf4 base + the SFT adapter, loaded as DPO loads it.

Prints one JSON object per strategy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stage1, not an installed one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import torch

    from stage1.hf.models import free_model, load_adapter, load_model, load_tokenizer
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.io.lineage import read_lineage
    from stage1.train.handoff import gain_kept, mean_token_loss
    from stage1.train.merge import (
        fidelity_rows,
        max_logit_difference,
        measure_trained,
        merge_adapter,
        probe_ids,
        probe_logits,
    )
    from stage1.train.settings import TrainingSettings
    from stage1.train.sft import run_train_sft

    work = Path(tempfile.mkdtemp(prefix="qlora-strategies-"))
    model_dir = build_tiny_qwen(work / "model", seed=0)
    train = ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"
    settings = TrainingSettings(quantization="nf4", min_optimizer_steps=0)
    sft_args = {"per_device_train_batch_size": 8, "max_steps": args.steps, "learning_rate": args.lr, "lr_scheduler_type": "constant",
                "max_length": 128, "save_steps": args.steps, "logging_steps": 5}
    run_train_sft(settings, model_dir=model_dir, train_path=train, out_dir=work / "sft", sft_args=sft_args,
                  lora_args={"r": 16, "lora_alpha": 32, "lora_dropout": 0.0})
    adapter = work / "sft" / "adapter"
    lineage = read_lineage(adapter)
    tokenizer = load_tokenizer(model_dir)
    rows, probes = fidelity_rows(tokenizer, train), probe_ids(tokenizer)
    reference = measure_trained(model_dir, adapter, lineage, probes, rows, logits=True)
    print(json.dumps({"lr": args.lr, "steps": args.steps, "rows": len(rows), "base_loss": reference.base_loss,
                      "trained_loss": reference.trained_loss}))

    def score(name: str, model) -> None:
        model.eval()
        loss = mean_token_loss(model, rows)
        diff = max_logit_difference(reference.probe_logits, probe_logits(model, probes))
        kept = gain_kept(reference.base_loss, reference.trained_loss, loss)
        print(json.dumps({"strategy": name, "loss": round(loss, 5), "sft_gain_kept": None if kept is None else round(kept, 4),
                          "max_logit_diff": round(diff, 4)}))
        free_model(model)

    from peft import PeftModel

    merged = merge_adapter(model_dir, adapter, TrainingSettings(quantization="nf4"))
    merged.save_pretrained(str(work / "16bit"), safe_serialization=True)
    free_model(merged)
    score("merge 16bit -> nf4", load_model(work / "16bit", quantization="nf4"))
    # The removed merge_mode dequantized_nf4: the adapter merged into the nf4 weights it saw, dequantised.
    dequantized = load_model(model_dir, quantization="nf4").dequantize(dtype=torch.float32)
    merged = PeftModel.from_pretrained(dequantized, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(work / "dequantized_nf4"), safe_serialization=True)
    free_model(merged)
    score("merge dequantized_nf4 -> nf4", load_model(work / "dequantized_nf4", quantization="nf4"))
    score("merge 16bit, held in 16-bit", load_model(work / "16bit"))
    score("adapter kept: nf4 base + SFT adapter", load_adapter(load_model(model_dir, quantization="nf4", device_map="cpu"), adapter,
                                                               expected_parent=model_dir, is_trainable=True))


if __name__ == "__main__":
    main()
