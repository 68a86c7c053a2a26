"""stage1: a test-first Stage 1 post-training pipeline (SFT data, SFT, negatives, pairs, DPO, evaluation)."""

__version__ = "0.1.0"
