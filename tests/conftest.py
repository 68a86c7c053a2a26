"""Shared fixtures: the tiny Qwen model and the real Qwen2 tokenizer, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# "ci" is deterministic (derandomize) so a green CI run is reproducible; "dev" explores new examples.
settings.register_profile(
    "ci", max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Under pytest-xdist (scripts/test.sh runs two workers) each worker and every CLI subprocess it starts
# computes on one thread: two workers with two torch threads each on two cores spend most of their
# time waiting for each other (a small matmul took 8.1 ms with 2 threads against 0.82 ms with 1 on
# busy cores, scripts/nf4_cpu_step.py). Set before torch is imported, so its thread pool is sized once.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``--dist loadgroup``: every test of the session's tiny run on one worker (it is built once
    there), and each integration file's tests together (their module fixtures train once). Unit tests
    are spread one by one."""
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    for item in items:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_run"))
        elif "integration" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2 model + real tokenizer, built offline with seed 0."""
    from stage1.hf.tiny import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"), seed=0)


@pytest.fixture(scope="session")
def qwen_tokenizer(tiny_model_dir):
    """The real Qwen2 tokenizer, loaded back through AutoTokenizer as every stage loads it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
