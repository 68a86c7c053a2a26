"""`stage1 score` and `stage1 check-leakage` on files made outside the project, in-process through cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stage1 import cli
from stage1.core.errors import EXIT_GATE, EXIT_INPUT

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "fixtures" / "golden"
POOLS = {"eval_items": ROOT / "stage1" / "pools" / "eval" / "items.jsonl", "sft": ROOT / "stage1" / "pools" / "sft" / "instructions.jsonl"}


def _outside_rows(keep=("stop_reason", "num_tokens")) -> list[dict]:
    """The golden fixture's generations as another framework would write them: the raw completion
    as ``response``, and only the optional fields named in ``keep``."""
    rows = []
    for line in (GOLDEN / "responses.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.append({"item_id": row["item_id"], "variant": row["variant"], "response": row["completion_text"],
                     **{key: row[key] for key in keep}})
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _score(tmp_path: Path, rows: list[dict], *extra: str) -> tuple[int, Path]:
    responses = _write(tmp_path / "responses.jsonl", rows)
    out = tmp_path / "scored"
    code = cli.main(["score", "--in", f"items={GOLDEN / 'items.jsonl'}", "--in", f"responses={responses}", "--out", str(out),
                     "--set", "eval.bootstrap_samples=50", *extra])
    return code, out


def test_score_gives_the_evaluations_verdicts_and_reports(tmp_path):
    """Scored from outside, the fixture's responses get exactly the verdicts evaluation gave them,
    and the same three reports; base -> sft is compared in the study family."""
    code, out = _score(tmp_path, _outside_rows())
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    expected = {(row["variant"], row["item_id"]): row["criteria"] for row in map(json.loads, (GOLDEN / "expected_scores.jsonl").read_text().splitlines())}
    scored = {(variant, row["id"]): outcome["criteria"] for row in results["items"] for variant, outcome in row["outcomes"].items()}
    assert scored == expected
    assert {(c["before"], c["after"], c["family"]) for c in results["comparisons"]} == {("base", "sft", "study")}
    assert results["lengths"]["base"]["tokens"]["mean"] is not None
    for name in ("report.md", "chart.png", "manifest.json"):
        assert (out / name).is_file()
    assert "lifts under" in (out / "report.md").read_text() or "no lift is detectable" in (out / "report.md").read_text()


def test_score_reads_the_stop_from_the_text_and_compares_any_variant_names(tmp_path):
    """Without stop_reason an END line means end and an Instruction: line a runaway; without
    num_tokens token lengths are unknown, not guessed; unknown variant names are compared with the first."""
    rows = [{**row, "variant": {"base": "server_a", "sft": "server_b"}[row["variant"]]} for row in _outside_rows(keep=())]
    code, out = _score(tmp_path, rows)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["variants"] == ["server_a", "server_b"]
    assert {(c["before"], c["after"]) for c in results["comparisons"]} == {("server_a", "server_b")}
    assert results["lengths"]["server_a"]["tokens"] == {"mean": None, "median": None}
    first = next(row for row in results["items"] if row["id"] == "g01")["outcomes"]["server_a"]
    assert first["stop_reason"] == "runaway" and first["criteria"]["no_runaway"] is False


@pytest.mark.parametrize(
    ("change", "line", "field", "message"),
    [
        (lambda rows: rows[2].update(model="x"), 3, "model", "unknown field"),
        (lambda rows: rows[4].update(item_id="nope"), 5, "item_id", "no evaluation item"),
        (lambda rows: rows[1].pop("response"), 2, "response", "missing"),
        (lambda rows: rows[3].update(response=7), 4, "response", "expected str"),
        (lambda rows: rows[0].update(stop_reason="length"), 1, "stop_reason", "unknown value"),
        (lambda rows: rows[6].update(num_tokens=-1), 7, "num_tokens", "0 or more"),
        (lambda rows: rows[5].update(variant=" "), 6, "variant", "is empty"),
        (lambda rows: rows.__setitem__(1, dict(rows[0])), 2, "item_id", "twice"),
    ],
)
def test_score_refuses_bad_rows_naming_file_line_and_field(tmp_path, capsys, change, line, field, message):
    rows = _outside_rows()
    change(rows)
    code, out = _score(tmp_path, rows)
    err = capsys.readouterr().err
    assert code == EXIT_INPUT and not out.exists()
    assert f"responses.jsonl:{line}" in err and f"field '{field}'" in err and message in err, err


def test_score_refuses_a_variant_that_skips_items(tmp_path, capsys):
    code, _ = _score(tmp_path, [row for row in _outside_rows() if not (row["variant"] == "sft" and row["item_id"] == "g03")])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT and "variant 'sft' has no response to 1 item(s): g03" in err


@pytest.mark.parametrize("inputs", [["items=a.jsonl"], ["items=a", "responses=b", "extra=c"], ["items=a", "items=b", "responses=c"]])
def test_score_refuses_missing_unknown_or_repeated_inputs(tmp_path, capsys, inputs):
    argv = ["score", "--out", str(tmp_path / "o")] + [part for text in inputs for part in ("--in", text)]
    assert cli.main(argv) == EXIT_INPUT
    assert "--in" in capsys.readouterr().err


def test_score_against_a_golden_result(tmp_path):
    """Against its own golden result nothing regressed; with every END line of sft removed, the
    drop in stopped_with_end is found and the exit code is 1."""
    from stage1.eval.golden import save_golden

    (tmp_path / "first").mkdir()
    _, out = _score(tmp_path / "first", _outside_rows())
    golden = save_golden(out / "results.json", tmp_path / "golden.json")
    (tmp_path / "same").mkdir()
    assert _score(tmp_path / "same", _outside_rows(), "--against", str(golden))[0] == 0
    worse = [dict(row, response=row["response"].replace("\nEND", ""), stop_reason="eos") if row["variant"] == "sft" else row
             for row in _outside_rows()]
    (tmp_path / "worse").mkdir()
    assert _score(tmp_path / "worse", worse, "--against", str(golden))[0] == EXIT_GATE


def test_score_against_reports_changes_both_ways_and_the_drop_rule_is_a_flag(tmp_path, capsys):
    """The fixture's sft with the END lines of 8 items removed: with --golden-min-drop above that
    drop nothing fails, but the drop is printed as a change; an impossible rule is refused before
    scoring (exit 2)."""
    from stage1.eval.golden import save_golden

    (tmp_path / "first").mkdir()
    _, out = _score(tmp_path / "first", _outside_rows())
    golden = save_golden(out / "results.json", tmp_path / "golden.json")
    cut = sorted({row["item_id"] for row in _outside_rows()})[:8]
    worse = [dict(row, response=row["response"].replace("\nEND", ""), stop_reason="eos")
             if row["variant"] == "sft" and row["item_id"] in cut else row for row in _outside_rows()]
    (tmp_path / "worse").mkdir()
    capsys.readouterr()
    code, _ = _score(tmp_path / "worse", worse, "--against", str(golden), "--golden-min-drop", "0.9", "--golden-alpha", "0.05")
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert code == 0 and "no significant regression" in printed
    assert "change: sft/stopped_with_end: small drop" in " ".join(printed.split())
    (tmp_path / "bad").mkdir()
    assert _score(tmp_path / "bad", worse, "--against", str(golden), "--golden-min-drop", "5")[0] == EXIT_INPUT
    assert "--golden-min-drop" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "scored").exists()


# ---------------------------------------------------------------- check-leakage


def _check(*inputs: str) -> int:
    return cli.main(["check-leakage", *[part for text in inputs for part in ("--in", text)]])


def test_check_leakage_passes_the_shipped_pools(capsys):
    assert _check(f"train={POOLS['sft']}", f"eval_items={POOLS['eval_items']}") == 0
    assert "no leak" in capsys.readouterr().out


def test_check_leakage_lists_each_offender_with_its_rule_and_exits_1(tmp_path, capsys):
    """An instruction file, an SFT file and a pairs file together; each leak names the rule that caught it."""
    instructions = _write(tmp_path / "plain.jsonl", [{"instruction": "What is the capital of Italy?"}, {"instruction": "Name a colour."}])
    sft = _write(tmp_path / "sft.jsonl", [{"id": "s1", "instruction": "which city is the capital of CHINA", "response": "Beijing.", "category": "x"}])
    pairs = _write(tmp_path / "pairs.jsonl", [{"prompt": "Instruction: What is 5 times 2?\nResponse:", "chosen": " 10.\nEND",
                                                "rejected": " 11.\nEND", "instruction_id": "p1", "category": "x",
                                                "negative_kind": "factually_incorrect", "split": "train"}])
    code = _check(f"train={instructions}", f"train={sft}", f"train={pairs}", f"eval_items={POOLS['eval_items']}")
    out = " ".join(capsys.readouterr().out.split())
    assert code == EXIT_GATE
    assert "paraphrase: eval 'eval-factual_qa-001'" in out  # "Which city is the capital of Italy?"
    assert "exact: eval 'eval-factual_qa-002'" in out  # "Which city is the capital of China?"
    assert "paraphrase: eval 'eval-arithmetic-003'" in out  # "Compute 5 times 2." (from the pairs file's prompt)
    assert "paraphrase: eval 'eval-factual_qa-nw02'" in out  # "Name the city that is China's capital." (new wording)
    assert "4 leak(s)" in out


@pytest.mark.parametrize(
    ("rows", "field"),
    [([{"id": 1, "text": "no instruction"}], "instruction"), ([], "--in train")],
)
def test_check_leakage_refuses_unusable_training_files(tmp_path, capsys, rows, field):
    train = _write(tmp_path / "train.jsonl", rows)
    assert _check(f"train={train}", f"eval_items={POOLS['eval_items']}") == EXIT_INPUT
    assert f"field '{field}'" in capsys.readouterr().err


def test_check_leakage_needs_both_inputs_and_existing_files(tmp_path, capsys):
    assert _check(f"eval_items={POOLS['eval_items']}") == EXIT_INPUT
    assert _check(f"train={tmp_path / 'missing.jsonl'}", f"eval_items={POOLS['eval_items']}") == EXIT_INPUT
    assert "not found" in capsys.readouterr().err
