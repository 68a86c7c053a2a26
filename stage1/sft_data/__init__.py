"""The SFT data stage: instructions in, responses from the pool or the base model, filtered and split."""
