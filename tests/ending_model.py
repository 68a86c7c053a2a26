"""The tiny model, nudged to end its answers: a random model never writes END or eos, so every
generation hits the token limit and the SFT filters drop it. Adding a multiple of the mean final
hidden state to the eos embedding (tied with the output layer) gives eos a logit that varies with
the context, so seeded sampling ends answers after a varying number of tokens and some rows are
accepted. Used by the resume and fault tests, which check mechanics, not quality.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: How far the eos logit is raised along the mean hidden direction. At 3.0, on the seed-0 tiny model
#: with two-shot prompts, temperature 0.7 and 24 new tokens, about 60% of rows end with eos after
#: 5-20 tokens; the rest reach the limit.
EOS_PUSH = 3.0
PROBE = "Instruction: What is the capital of France?\nResponse: Paris is the capital of France, a city in Europe."


def build_ending_model(tiny_model_dir: Path, out: Path, push: float = EOS_PUSH) -> Path:
    """A copy of ``tiny_model_dir`` whose eos embedding is pushed along the mean hidden state."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(tiny_model_dir, out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer(PROBE, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states[-1][0]
        direction = hidden.mean(0)
        model.get_input_embeddings().weight[tokenizer.eos_token_id] += push * direction / direction.norm()
    model.save_pretrained(out, safe_serialization=True)
    return out
