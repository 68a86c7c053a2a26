"""Time one SFT forward + backward of the tiny model on CPU, nf4 and fp32 side by side.

    python scripts/nf4_cpu_step.py [--profile]

Each variant loads the tiny model as ``stage1.hf.models.load_model`` does (its BitsAndBytesConfig:
nf4, double quantisation; the compute dtype is varied here), wraps it in
the preset's LoRA (r 16, all seven projections), patches TRL's fused LM head as ``SFTTrainer`` does
and runs forward + backward on one batch of the first 8 SFT rows of the fixture pool (padded to the
longest, responses supervised, as SFT batches them), under bf16 autocast where the Trainer turns
it on (``bf16`` follows ``training.dtype: bfloat16``). Prints the median of the timed steps after one
warm-up per variant, and with ``--profile`` the operators that take the most time; every variant
runs with each of ``--threads`` torch intra-op threads (default 2, then 1: on busy shared cores two
threads wait on each other at every small operator).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's stage1, not an installed one

#: name -> (quantization, dtype of the non-quantised weights, bnb compute dtype, bf16 autocast)
VARIANTS = {
    "fp32 (tiny)": ("none", "float32", None, False),
    "nf4, bf16 weights + compute, autocast": ("nf4", "bfloat16", "bfloat16", True),
    "nf4, bf16 weights + compute": ("nf4", "bfloat16", "bfloat16", False),
    "nf4, fp32 weights + compute": ("nf4", "float32", "float32", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=8, help="rows of the fixture pool, as SFT batches them (8 in tiny-qlora)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="*", default=[2, 1], help="torch intra-op thread counts, each in turn")
    args = parser.parse_args()

    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from trl.trainer.utils import add_fused_lm_head

    from stage1.hf.lora import build_lora_config
    from stage1.hf.models import load_tokenizer
    from stage1.hf.tiny import build_tiny_qwen
    from stage1.train.merge import fidelity_rows

    model_dir = build_tiny_qwen(Path(tempfile.mkdtemp(prefix="nf4-step-")) / "model", seed=0)
    rows = fidelity_rows(load_tokenizer(model_dir), ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl")[: args.batch]
    width = max(len(row["input_ids"]) for row in rows)
    pad = lambda values, fill: [v + [fill] * (width - len(v)) for v in values]  # noqa: E731
    ids = torch.tensor(pad([row["input_ids"] for row in rows], 0))
    labels = torch.tensor(pad([row["labels"] for row in rows], -100))
    mask = torch.tensor(pad([[1] * len(row["input_ids"]) for row in rows], 0))
    print(json.dumps({"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count(),
                      "torch": torch.__version__, "batch": list(ids.shape),
                      "supervised": int((labels != -100).sum())}))

    for threads in args.threads:  # the LM head alone: every supervised position onto the whole vocabulary
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.bfloat16):
            hidden, weight = torch.randn(int((labels != -100).sum()), 64, dtype=dtype), torch.randn(151_936, 64, dtype=dtype)
            torch.nn.functional.linear(hidden, weight)
            start = time.perf_counter()
            for _ in range(5):
                torch.nn.functional.linear(hidden, weight)
            print(json.dumps({"threads": threads, "lm_head_matmul": str(dtype), "shape": [hidden.shape[0], 64, 151_936],
                              "s": round((time.perf_counter() - start) / 5, 4)}))

    for threads, name in [(t, v) for t in args.threads for v in args.variants]:
        torch.set_num_threads(threads)
        quantization, dtype, compute, autocast = VARIANTS[name]
        config = None
        if quantization == "nf4":
            config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                        bnb_4bit_compute_dtype=getattr(torch, compute))
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype), quantization_config=config,
                                                     device_map="cpu" if config else None)
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        model = get_peft_model(model, build_lora_config({"r": 16, "lora_alpha": 32}))
        model.train()

        def step(model=model, autocast=autocast):
            with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext():
                out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False)
            out.loss.backward()
            model.zero_grad(set_to_none=True)

        step()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        print(json.dumps({"threads": threads, "variant": name, "step_s": round(statistics.median(times), 3), "all_s": [round(t, 3) for t in times]}))
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
        del model, step


if __name__ == "__main__":
    main()
