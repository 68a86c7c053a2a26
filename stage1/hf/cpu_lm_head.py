"""TRL's fused LM head, tuned for training on CPU.

Why this exists: TRL 1.16 computes every SFT and DPO log-probability through a fused LM head
(``trl.trainer.utils.add_fused_lm_head``) that projects hidden states through the output layer in
tiles of 32,768 vocabulary rows, sized for a GPU. On CPU two of its choices cost most of a training step:

* a tile of 4,096 tokens x 32,768 rows does not fit in the CPU's caches, and the torch fallback
  makes several passes over it (max, exp, sum, entropy, argmax) and again in the backward;
* it scores every position, masked or not, on any device without Triton ("every position is scored
  instead", to keep tile shapes fixed for compilers such as Neuron's). CPU eager mode compiles
  nothing, and SFT masks the instruction and the padding, about half the positions.

Measured on the tiny organism (2 CPU cores, 80 SFT steps, `cli.py train-sft --force sft`): 110-124 s
with TRL's choices, 53 s with 2,048-row tiles, 30 s with 2,048-row tiles and only the supervised
positions scored, the same losses to the printed digits. Nothing changes on CUDA or XPU, where TRL
uses its Triton kernels and already scores only the supervised positions.
"""

from __future__ import annotations

import trl.trainer.utils as trl_utils

#: Vocabulary rows per tile on CPU (TRL's own, for GPUs: 32,768). Of 1,024 to 32,768, 1,024-2,048
#: was fastest for 100-450 tokens a step on the tiny model (bench/ has no row for it: measured once).
CPU_TILE_VOCAB = 2048
_GPU_TILE_VOCAB = getattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", None)
_TRITON_CHECK = getattr(trl_utils, "_use_triton", None)


def _compact_on_cpu(device) -> bool:
    """Whether the fused head scores only supervised positions: TRL's answer, and yes on CPU."""
    return device.type == "cpu" or _TRITON_CHECK(device)


def tune_for_cpu() -> bool:
    """Give TRL's fused LM head CPU-sized tiles and score only supervised positions on CPU.

    Process-wide and idempotent; called when a model is loaded for training on CPU. Returns False,
    changing nothing, when the installed TRL no longer has the two names this relies on (the head
    then runs as TRL ships it: correct, only slower).
    """
    if _GPU_TILE_VOCAB is None or _TRITON_CHECK is None:
        return False
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = CPU_TILE_VOCAB
    trl_utils._use_triton = _compact_on_cpu
    return True
