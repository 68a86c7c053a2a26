"""The pairs stage: SFT examples and negatives in, DPO preference pairs (train / eval) out."""
