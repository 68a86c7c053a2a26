"""Log-probabilities of completions under a causal LM (torch): what DPO's diagnostics and its
runtime method checks score with."""

from __future__ import annotations


def completion_log_probs(model, batch: dict):
    """Sum of log p(token) over each row's completion tokens.

    Shapes: ``input_ids``, ``attention_mask``, ``completion_mask`` (B, T) → (B,). Position t's
    hidden state predicts token t+1, so hidden[:, :-1] is scored against input_ids[:, 1:] where
    completion_mask[:, 1:] is set.
    """
    import torch

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    scored = batch["completion_mask"][:, 1:].bool()
    targets = batch["input_ids"][:, 1:][scored]
    logits = causal_lm.lm_head(hidden[:, :-1][scored]).float()
    token_log_probs = logits.log_softmax(dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    rows = torch.arange(scored.shape[0], device=scored.device).unsqueeze(1).expand_as(scored)[scored]
    return torch.zeros(scored.shape[0], device=logits.device).index_add_(0, rows, token_log_probs)
