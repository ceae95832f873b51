"""``autokd report DIR1 DIR2``: the trials of several drivers of one search merged into
one front (autokd.merge)."""

from __future__ import annotations

import json

import pytest

from autokd import ResultStore, TrialRecord
from autokd.cli import main

OBJECTIVES = [{"name": "accuracy", "higher_is_better": True}, {"name": "latency", "higher_is_better": False}]


def driver_dir(path, results, objectives=OBJECTIVES, constraints=()):
    """An output dir as one driver leaves it: trials numbered from 0 and a summary."""
    store = ResultStore(path)
    for trial, (hidden, accuracy, latency) in enumerate(results):
        metrics = {} if accuracy is None else {"accuracy": accuracy, "latency": latency}
        status, error = ("ok", None) if accuracy is not None else ("failed", "RuntimeError: boom")
        store.append(TrialRecord(trial, {"hidden_size": hidden}, metrics, status, error, 1.0, {}))
    store.write_summary({"objectives": objectives, "constraints": list(constraints), "search_algorithm": "TPE"})
    return str(path)


@pytest.fixture
def two_drivers(tmp_path):
    # driver A alone has front {0, 1}; driver B's trial 1 (0.95 at 3.0) dominates A's trial 1
    # (0.9 at 4.0); merged front: A0 (0.8 at 1.0), B0 (0.85 at 2.0), B1 (0.95 at 3.0)
    a = driver_dir(tmp_path / "a", [(128, 0.8, 1.0), (256, 0.9, 4.0), (512, None, None)])
    b = driver_dir(tmp_path / "b", [(192, 0.85, 2.0), (384, 0.95, 3.0), (64, 0.5, 5.0)], constraints=["latency <= 2.5"])
    return a, b


def test_report_merges_two_directories_into_one_front(two_drivers, tmp_path, capsys):
    a, b = two_drivers
    merged = tmp_path / "merged"
    assert main(["report", a, b, "--merged-dir", str(merged)]) == 0
    out = capsys.readouterr().out

    records = ResultStore(merged).load()
    assert [r.trial for r in records] == [0, 1, 2, 3, 4, 5]
    assert [(r.extras["merged_from"]["dir"], r.extras["merged_from"]["trial"]) for r in records] == [
        (str(tmp_path / "a"), 0), (str(tmp_path / "a"), 1), (str(tmp_path / "a"), 2),
        (str(tmp_path / "b"), 0), (str(tmp_path / "b"), 1), (str(tmp_path / "b"), 2),
    ]  # fmt: skip
    summary = json.loads((merged / "summary.json").read_text())
    assert [t["trial"] for t in summary["pareto_front"]] == [0, 3, 4]
    assert summary["trials"] == 6 and summary["failed"] == 1
    # no constraint in A's summary (the first): the best is the most accurate
    assert summary["best_trial"] == 4 and summary["best_model_arch"] == {"hidden_size": 384}
    assert "pareto front: trials [0, 3, 4]" in out
    assert "best trial 4: {'hidden_size': 384}" in out
    assert f"trials 0-2: {a} (its trials in order)" in out and f"trials 3-5: {b} (its trials in order)" in out


def test_constraints_come_from_the_first_directory(two_drivers, tmp_path):
    a, b = two_drivers
    assert main(["report", b, a, "--merged-dir", str(tmp_path / "m")]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    # latency <= 2.5: B0 (0.85 at 2.0) beats A0 (0.8 at 1.0); B is first now, so B0 is trial 0
    assert summary["best_trial"] == 0 and summary["best_model_arch"] == {"hidden_size": 192}
    assert summary["best_meets_constraints"] is True


def test_without_merged_dir_nothing_is_left_behind(two_drivers, tmp_path, capsys):
    a, b = two_drivers
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["report", a, b]) == 0
    assert "pareto front: trials [0, 3, 4]" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_runs_of_different_searches_are_refused(tmp_path, capsys):
    a = driver_dir(tmp_path / "a", [(128, 0.8, 1.0)])
    other = [{"name": "accuracy", "higher_is_better": True}]
    c = driver_dir(tmp_path / "c", [(128, 0.8, 1.0)], objectives=other)
    assert main(["report", a, c]) == 1
    err = capsys.readouterr().err
    assert "objectives ['accuracy'] differ from" in err and "only drivers of one search can be merged" in err


def test_an_empty_directory_is_named(tmp_path, capsys):
    a = driver_dir(tmp_path / "a", [(128, 0.8, 1.0)])
    (tmp_path / "empty").mkdir()
    assert main(["report", a, str(tmp_path / "empty")]) == 1
    assert f"{tmp_path / 'empty' / 'trials.jsonl'}: no trials recorded" in capsys.readouterr().err
