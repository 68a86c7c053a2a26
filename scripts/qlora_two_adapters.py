"""Strategy (b) of the QLoRA hand-off, measured on the tiny model in nf4 on CPU: the SFT adapter kept
apart and frozen, DPO training a second, new adapter on top, both served as one concatenated adapter.

    python scripts/qlora_two_adapters.py                            # the tiny preset's SFT settings
    python scripts/qlora_two_adapters.py --sft-lr 5e-5 --sft-steps 20

1. SFT: one nf4 SFT adapter on the fixture pool, as ``scripts/qlora_strategies.py`` trains it.
2. Hand-off: the nf4 base with the SFT adapter loaded frozen (adapter ``"sft"``), scored with
   ``stage1.train.handoff`` against the trained model (share of the SFT gain kept, largest logit
   difference on the merge probes): the same load as strategy (c).
3. DPO: a new trainable adapter ``"dpo"`` (B = 0) beside it, both active (``set_adapter(["sft",
   "dpo"])`` on the LoRA model, the SFT weights frozen again since that call makes every active
   adapter trainable). The reference is base + SFT adapter: its log-probabilities are computed with
   the SFT adapter alone before the DPO adapter exists. The loss is TRL's sigmoid DPO loss written out
   here, with ``stage1.train.dpo.completion_log_probs``: TRL's DPOTrainer, given a PEFT model and no
   ``peft_config``, copies the adapter named ``"default"`` into a frozen ``"ref"`` and trains that one
   (``trl/trainer/dpo_trainer.py``, "a PEFT model with a pretrained adapter"); it has no way to train
   one adapter of two stacked ones against the other alone. Step 0: policy == reference, loss ln 2.
4. Serving: ``add_weighted_adapter(["sft", "dpo"], [1, 1], combination_type="cat")`` concatenates the
   two low-rank products, each A scaled by its adapter's alpha / r, into one adapter of rank
   r_sft + r_dpo with scale 1 (``peft/tuners/lora/model.py``), made on the fp32 base from the two saved
   folders; reloaded on a fresh nf4 base as evaluation and vLLM would load it and compared with the
   two adapters stacked: largest logit difference on the probe rows and on the first SFT rows (and,
   as the floor, between bitsandbytes' CPU inference kernel and the training one on the same
   model), the largest difference of the weight deltas, and the logits on the fp32 base.

Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stage1, not an installed one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-lr", type=float, default=3e-3)
    parser.add_argument("--sft-steps", type=int, default=40)
    parser.add_argument("--dpo-lr", type=float, default=2e-4, help="the tiny presets' DPO learning rate")
    parser.add_argument("--dpo-steps", type=int, default=10)
    parser.add_argument("--dpo-batch", type=int, default=4)
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from stage1.core.records import PreferencePair
    from stage1.hf.lora import build_lora_config
    from stage1.hf.models import free_model, load_model, load_tokenizer
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.io.lineage import read_lineage
    from stage1.io.records import read_records
    from stage1.negatives.settings import NegativeSettings
    from stage1.negatives.stage import run_negatives
    from stage1.pairs.settings import PairSettings
    from stage1.pairs.stage import run_pairs
    from stage1.train.data import build_preference_rows
    from stage1.train.dpo import completion_log_probs
    from stage1.train.handoff import gain_kept, mean_token_loss
    from stage1.train.merge import fidelity_rows, max_logit_difference, measure_trained, probe_ids, probe_logits
    from stage1.train.settings import TrainingSettings
    from stage1.train.sft import run_train_sft

    def emit(**values) -> None:
        print(json.dumps(values), flush=True)

    work = Path(tempfile.mkdtemp(prefix="qlora-two-adapters-"))
    model_dir = build_tiny_qwen(work / "model", seed=0)
    pool = ROOT / "stage1" / "pools"
    train = pool / "sft" / "instructions.jsonl"
    lora_args = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0}
    sft_args = {"per_device_train_batch_size": 8, "max_steps": args.sft_steps, "learning_rate": args.sft_lr,
                "lr_scheduler_type": "constant", "max_length": 128, "save_steps": args.sft_steps, "logging_steps": 5}
    run_train_sft(TrainingSettings(quantization="nf4", min_optimizer_steps=0), model_dir=model_dir, train_path=train,
                  out_dir=work / "sft", sft_args=sft_args, lora_args=lora_args)
    adapter = work / "sft" / "adapter"
    tokenizer = load_tokenizer(model_dir)
    rows, probes = fidelity_rows(tokenizer, train), probe_ids(tokenizer)
    reference = measure_trained(model_dir, adapter, read_lineage(adapter), probes, rows, logits=True)
    emit(sft_lr=args.sft_lr, sft_steps=args.sft_steps, rows=len(rows), base_loss=reference.base_loss, trained_loss=reference.trained_loss)

    # 2. The hand-off: nf4 base + the SFT adapter, frozen.
    model = PeftModel.from_pretrained(load_model(model_dir, quantization="nf4", device_map="cpu"), str(adapter), adapter_name="sft",
                                      is_trainable=False)
    model.eval()
    loss = mean_token_loss(model, rows)
    kept = gain_kept(reference.base_loss, reference.trained_loss, loss)
    emit(strategy="(b) at the hand-off: nf4 base + SFT adapter (frozen)", loss=round(loss, 5),
         sft_gain_kept=None if kept is None else round(kept, 4),
         max_logit_diff=round(max_logit_difference(reference.probe_logits, probe_logits(model, probes)), 4))

    # 3. DPO on a second adapter. Pairs: the pipeline's rule-made negatives of the fixture pool.
    run_negatives(NegativeSettings(), sft_path=train, out_dir=work / "negatives")
    run_pairs(PairSettings(), sft_path=train, negatives_path=work / "negatives" / "negatives.jsonl", out_dir=work / "pairs",
              tokenizer_dir=model_dir, eval_items_path=pool / "eval" / "items.jsonl")
    pairs = build_preference_rows(tokenizer, read_records(work / "pairs" / "train.jsonl", PreferencePair), max_length=128,
                                  overlong="drop", source=work / "pairs" / "train.jsonl").rows
    collate = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    batches = [collate(pairs[i * args.dpo_batch : (i + 1) * args.dpo_batch]) for i in range(args.dpo_steps)]
    # A fresh load for training: bitsandbytes on CPU repacks nf4 weights for its inference kernel at
    # the first forward in eval mode without grad, and a training forward on repacked weights fails.
    free_model(model)
    model = PeftModel.from_pretrained(load_model(model_dir, quantization="nf4", device_map="cpu"), str(adapter), adapter_name="sft",
                                      is_trainable=False)
    model.train()  # dropout 0: train mode only keeps the weights as training reads them
    with torch.no_grad():  # the reference: base + SFT adapter alone, scored once before training
        reference_logps = [completion_log_probs(model, batch) for batch in batches]

    model.add_adapter("dpo", build_lora_config(lora_args))
    lora_model = model.base_model
    lora_model.set_adapter(["sft", "dpo"])
    for name, param in model.named_parameters():
        param.requires_grad = ".dpo." in name
    trainable = [param for param in model.parameters() if param.requires_grad]
    assert trainable and all(".lora_" in name for name, param in model.named_parameters() if param.requires_grad)
    sft_before = {name: param.detach().clone() for name, param in model.named_parameters() if ".sft." in name}
    optimizer = torch.optim.AdamW(trainable, lr=args.dpo_lr, weight_decay=0.0)
    model.train()
    losses = []
    for batch, ref in zip(batches, reference_logps):
        policy = completion_log_probs(model, batch)
        half = policy.shape[0] // 2  # the collator puts the chosen rows first, then the rejected ones
        margin = (policy[:half] - ref[:half]) - (policy[half:] - ref[half:])
        loss = -torch.nn.functional.logsigmoid(args.beta * margin).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    sft_moved = max(float((param - sft_before[name]).abs().max()) for name, param in model.named_parameters() if name in sft_before)
    emit(dpo_steps=args.dpo_steps, dpo_lr=args.dpo_lr, step0_loss=round(losses[0], 6), ln2=round(math.log(2), 6),
         losses=[round(x, 4) for x in losses], sft_adapter_max_change=sft_moved)

    # 4. Serving both deltas as one adapter of rank r_sft + r_dpo. The concatenation is made on the fp32
    # base: on the nf4 model add_weighted_adapter creates the new adapter in bf16 (the compute dtype)
    # and rounds the concatenated factors into it.
    stacked_train = probe_logits(model, probes)  # train mode: the kernels training used
    model.eval()
    stacked_probes, stacked_rows = probe_logits(model, probes), row_logits(model, rows[:8])
    kernel_floor = max_logit_difference(stacked_train, stacked_probes)  # bitsandbytes' inference kernel vs training's
    lora_model.set_adapter("sft")
    dpo_moved = max_logit_difference(stacked_probes, probe_logits(model, probes))
    model.save_pretrained(str(work / "adapters"), selected_adapters=["sft", "dpo"])  # one folder each
    free_model(model)
    fp32 = PeftModel.from_pretrained(load_model(model_dir), str(work / "adapters" / "sft"), adapter_name="sft")
    fp32.load_adapter(str(work / "adapters" / "dpo"), adapter_name="dpo")
    fp32.base_model.set_adapter(["sft", "dpo"])
    fp32.eval()
    fp32_stacked = probe_logits(fp32, probes)
    fp32.base_model.add_weighted_adapter(["sft", "dpo"], [1.0, 1.0], "served", combination_type="cat")
    ranks, delta_error = combined_deltas(fp32.base_model, ["sft", "dpo"], "served")
    fp32.save_pretrained(str(work / "adapters"), selected_adapters=["served"])
    free_model(fp32)
    served_dir = work / "adapters" / "served"
    config = json.loads((served_dir / "adapter_config.json").read_text())
    served = PeftModel.from_pretrained(load_model(model_dir), str(served_dir))
    served.eval()
    fp32_served = max_logit_difference(fp32_stacked, probe_logits(served, probes))
    free_model(served)
    served = PeftModel.from_pretrained(load_model(model_dir, quantization="nf4", device_map="cpu"), str(served_dir))
    served.eval()
    emit(strategy="(b) served: base + one concatenated adapter vs the two stacked",
         adapter_r=config["r"], adapter_lora_alpha=config["lora_alpha"], delta_rank_max=max(ranks), delta_rank_min=min(ranks),
         max_delta_weight_error=delta_error,
         nf4_max_logit_diff_probes=max_logit_difference(stacked_probes, probe_logits(served, probes)),
         nf4_max_logit_diff_rows=max_logit_difference(stacked_rows, row_logits(served, rows[:8])),
         nf4_kernel_floor=kernel_floor, fp32_max_logit_diff_probes=fp32_served, dpo_moved_probe_logits_by=dpo_moved)


def row_logits(model, rows):
    """fp32 logits ``[seq, vocab]`` of each row, one row per forward (no padding)."""
    import torch

    with torch.no_grad():
        return [model(input_ids=torch.tensor([row["input_ids"]])).logits[0].float() for row in rows]


def combined_deltas(lora_model, parts: list[str], name: str) -> tuple[list[int], float]:
    """Numerical rank of adapter ``name``'s delta (B @ A * alpha / r) in every adapted module, and the
    largest absolute difference between it and the sum of the ``parts``' deltas."""
    import torch

    ranks, error = [], 0.0
    for module in lora_model.modules():
        if hasattr(module, "lora_A") and name in module.lora_A:
            delta = module.get_delta_weight(name)
            ranks.append(int(torch.linalg.matrix_rank(delta)))
            error = max(error, float((delta - sum(module.get_delta_weight(part) for part in parts)).abs().max()))
    return ranks, error


if __name__ == "__main__":
    main()
