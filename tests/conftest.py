"""Shared fixtures: the tiny Qwen model and the real Qwen2 tokenizer, built once per session."""

from __future__ import annotations

import os
import re
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


# optionalhook: without it pytest aborts with PluginValidationError ("unknown hook") when xdist is
# absent or disabled (`pytest -p no:xdist`), before a single test runs.
# The session-scoped runs (tests/integration/conftest.py): the files that use one run on one worker.
# A file names one of them at most (the organism's tests are apart from the random run's).
SHARED_RUNS = ("organism_run", "tiny_run")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadscope`` (scripts/test.sh): every file that uses one of the session's shared
    runs on one worker, so each is built once; each other integration file's tests together, so their module
    fixtures train once; unit tests spread one by one.

    Written here because xdist's own ``--dist loadgroup`` does not group under pytest 9 (it renames
    ``item._nodeid``, which pytest 9 no longer reads): a scheduler sees only node ids, so the files
    that use ``tiny_run`` are found by reading them.
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    tests = Path(__file__).resolve().parent
    shared = {}
    for path in tests.rglob("test_*.py"):
        text = path.read_text()
        for fixture in SHARED_RUNS:
            if re.search(rf"\b{fixture}\b", text):
                shared[path.relative_to(config.rootpath).as_posix()] = fixture
                break

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path in shared:
                return shared[path]
            return path if path.startswith("tests/integration/") else nodeid

    return SharedRunScheduling(config, log)


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
