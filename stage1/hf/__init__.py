"""Adapters around transformers, peft, bitsandbytes and vLLM: model loading, the tiny offline model,
generation backends and the memory plan."""
