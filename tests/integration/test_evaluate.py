"""The evaluation stage on the tiny model: base against a briefly SFT-trained and merged model.

The session's shared tiny SFT run (20 steps) and merge are reused; every evaluation uses 13 items and
short generations, so the module stays well under a minute on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from stage1.core.errors import GateError, InputError, LineageError
from stage1.core.format import STOP_END
from stage1.eval.stage import EvalSettings, VariantSpec, run_evaluate
from tests.integration.tiny_training import SFT_ROWS, merged_run, sft_run, train_file

ROOT = Path(__file__).resolve().parents[2]
ITEMS = ROOT / "fixtures" / "golden" / "items.jsonl"
FAST = EvalSettings(max_new_tokens=12, batch_size=8, bootstrap_samples=200, min_category_items=3)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory) -> Path:
    """<run>/model, <run>/sft_data/train.jsonl, <run>/sft/adapter and <run>/merged, as the pipeline lays
    them out, copied from the session's shared tiny SFT run and merge (tests/integration/tiny_training.py)."""
    sft = sft_run(tiny_model_dir, tmp_path_factory)
    merged = merged_run(tiny_model_dir, tmp_path_factory)
    run = tmp_path_factory.mktemp("eval-run")
    shutil.copytree(tiny_model_dir, run / "model")
    shutil.copytree(train_file(sft).parent, run / "sft_data")
    shutil.copytree(sft, run / "sft")
    shutil.copytree(merged, run / "merged")
    return run


def specs(run: Path) -> list[VariantSpec]:
    return [
        VariantSpec("base_raw", run / "model", use_format=False),
        VariantSpec("base", run / "model"),
        VariantSpec("sft", run / "merged"),
        VariantSpec("dpo", run / "merged", adapter_dir=run / "dpo" / "adapter"),  # never trained here
    ]


@pytest.fixture
def one_model_alive(monkeypatch):
    """Counts live models through stage1.hf.models; records the most ever alive at once."""
    import stage1.hf.models as models

    state = {"alive": 0, "most": 0, "loaded": []}
    real_load, real_free = models.load_model, models.free_model

    def load_model(*args, **kwargs):
        model = real_load(*args, **kwargs)
        state["alive"] += 1
        state["most"] = max(state["most"], state["alive"])
        state["loaded"].append(id(model))
        return model

    def free_model(model):
        real_free(model)
        state["alive"] -= 1

    monkeypatch.setattr(models, "load_model", load_model)
    monkeypatch.setattr(models, "free_model", free_model)
    return state


def test_sft_stops_with_end_more_often_than_base(tiny_run, tmp_path, one_model_alive):
    out = tmp_path / "eval"
    # The tiny training rows ask two of the golden items' questions ("What is the capital of
    # France?" is a paraphrase of g01): the gate rightly refuses them, so they are left out here.
    trained = (tiny_run / "sft_data" / "train.jsonl").read_text().splitlines(keepends=True)
    clean = tmp_path / "train.jsonl"
    clean.write_text("".join(line for line in trained if "capital of France" not in line and "legs does a spider" not in line))
    assert len(clean.read_text().splitlines()) == len(trained) - 2
    manifest = run_evaluate(FAST, variants=specs(tiny_run), items_path=ITEMS, out_dir=out, training_paths=[clean], in_process=True)
    results = json.loads((out / "results.json").read_text())
    # The random tiny model's SFT answers are mostly punctuation, which the criteria read as no answer
    # (stopped_with_end needs one), so the stop itself is read from the generations here.
    stopped = {}
    for variant in ("base_raw", "base", "sft"):
        responses = json.loads((out / "generations" / f"{variant}.json").read_text())["responses"]
        stopped[variant] = sum(r["stop_reason"] == STOP_END for r in responses) / len(responses)
    assert stopped["sft"] > stopped["base"], stopped
    rates = {v: results["rates"][v]["stopped_with_end"]["rate"] for v in ("base_raw", "base", "sft")}
    assert all(rate <= stopped[v] for v, rate in rates.items()), (rates, stopped)

    # One model at a time, each on a fresh base object, all freed.
    assert one_model_alive["most"] == 1 and one_model_alive["alive"] == 0
    assert len(one_model_alive["loaded"]) == 3

    # Every output, the manifest last; the missing variants are reported, not silently dropped.
    for name in ("results.json", "report.md", "chart.png", "generations/base.json", "generations/sft.json", "generations/base_raw.json"):
        assert (out / name).is_file(), name
    assert all((out / "manifest.json").stat().st_mtime_ns >= (out / name).stat().st_mtime_ns for name in ("results.json", "chart.png"))
    assert results["skipped_variants"]["dpo"].startswith("adapter not found")
    assert "dpo_only" in results["skipped_variants"]
    assert "- variant `dpo`: adapter not found" in (out / "report.md").read_text()
    assert manifest["counts"]["items"] == len(ITEMS.read_text().splitlines()) == 14 and manifest["counts"]["variants"] == 3
    assert results["provenance"]["leakage"]["checked"] is True
    assert set(results["lengths"]) == {"base_raw", "base", "sft"} and results["pair_lengths"] == {}  # no pairs file given
    assert all(cell["tokens"]["mean"] is not None for cell in results["lengths"].values())
    assert "## Response length" in (out / "report.md").read_text()

    # The raw-instruction base really was prompted without the wrapper, the others with it.
    first = results["items"][0]
    assert first["outcomes"]["base_raw"]["prompt"] == first["instruction"]
    assert first["outcomes"]["base"]["prompt"] == f"Instruction: {first['instruction']}\nResponse:"
    variants = results["provenance"]["variants"]
    assert variants["sft"]["model_hash"] != variants["base"]["model_hash"]


def test_subprocess_per_variant_resumes_and_reruns_on_change(tiny_run, tmp_path):
    out = tmp_path / "eval"
    settings = EvalSettings(**{**FAST.__dict__, "limit": 3})
    first = run_evaluate(settings, variants=[VariantSpec("base", tiny_run / "model")], items_path=ITEMS, out_dir=out)
    run = first["runs"]["base"]
    assert run["resumed"] is False
    assert run["memory"]["released"]["child_processes_left"] == 0
    generated = json.loads((out / "generations" / "base.json").read_text())
    assert generated["pid"] != os.getpid() and len(generated["responses"]) == 3

    again = run_evaluate(settings, variants=[VariantSpec("base", tiny_run / "model")], items_path=ITEMS, out_dir=out)
    assert again["runs"]["base"]["resumed"] is True

    changed = EvalSettings(**{**settings.__dict__, "max_new_tokens": 4})
    third = run_evaluate(changed, variants=[VariantSpec("base", tiny_run / "model")], items_path=ITEMS, out_dir=out, in_process=True)
    assert third["runs"]["base"]["resumed"] is False


def test_an_interrupted_evaluation_resumes_at_the_next_variant(tiny_run, tmp_path, monkeypatch):
    import stage1.eval.runner as runner

    out = tmp_path / "eval"
    settings = EvalSettings(**{**FAST.__dict__, "limit": 2, "variants": ("base", "sft")})
    real = runner.generate_responses

    def interrupted(spec, *args, **kwargs):
        if spec.name == "sft":
            raise KeyboardInterrupt
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(runner, "generate_responses", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_evaluate(settings, variants=specs(tiny_run), items_path=ITEMS, out_dir=out, in_process=True)
    assert (out / "generations" / "base.json").is_file() and not (out / "results.json").exists()
    monkeypatch.setattr(runner, "generate_responses", real)
    manifest = run_evaluate(settings, variants=specs(tiny_run), items_path=ITEMS, out_dir=out, in_process=True)
    assert manifest["runs"]["base"]["resumed"] is True and manifest["runs"]["sft"]["resumed"] is False


def test_dry_run_loads_and_reports_memory_without_generating(tiny_run, tmp_path):
    out = tmp_path / "eval"
    report = run_evaluate(FAST, variants=specs(tiny_run), items_path=ITEMS, out_dir=out, dry_run=True, in_process=True)
    assert set(report["variants"]) == {"base_raw", "base", "sft"}
    assert report["variants"]["sft"]["memory"]["after_load"]["rss_mib"] > 0
    assert json.loads((out / "dry_run.json").read_text()) == report
    assert not (out / "results.json").exists() and not (out / "manifest.json").exists()


def test_leakage_gate_fails_closed(tiny_run, tmp_path):
    leaking = tmp_path / "items.jsonl"
    rows = [json.loads(line) for line in ITEMS.read_text().splitlines()]
    rows.append({**rows[0], "id": "leak", "instruction": SFT_ROWS[0][0]})
    leaking.write_text("".join(json.dumps(row) + "\n" for row in rows))
    train = tiny_run / "sft_data" / "train.jsonl"
    with pytest.raises(GateError, match="appear in training data"):
        run_evaluate(FAST, variants=specs(tiny_run), items_path=leaking, out_dir=tmp_path / "a", training_paths=[train], in_process=True)
    with pytest.raises(GateError, match="not found"):
        run_evaluate(FAST, variants=specs(tiny_run), items_path=ITEMS, out_dir=tmp_path / "b",
                     training_paths=[tmp_path / "absent.jsonl"], in_process=True)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(GateError, match="hold no rows"):
        run_evaluate(FAST, variants=specs(tiny_run), items_path=ITEMS, out_dir=tmp_path / "c", training_paths=[train, empty], in_process=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_quantization_mismatch_is_refused_before_loading(tiny_run, tmp_path):
    spec = VariantSpec("dpo_only", tiny_run / "model", adapter_dir=tiny_run / "sft" / "adapter", quantization="nf4")
    with pytest.raises(LineageError, match="quantization"):
        run_evaluate(FAST, variants=[spec], items_path=ITEMS, out_dir=tmp_path / "eval", in_process=True)


def test_nothing_to_evaluate_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no variant to evaluate"):
        run_evaluate(FAST, variants=[VariantSpec("base", tmp_path / "nowhere")], items_path=ITEMS, out_dir=tmp_path / "eval")
