"""Training: LoRA/QLoRA SFT, the merge into the 16-bit base, and DPO, around TRL's trainers."""
