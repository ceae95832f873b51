"""The result store under damage: cut-off and unterminated last lines, unreadable lines,
metrics of odd types, a stale summary, and a repair killed half-way (#13, items 1, 2, 5,
6, 7, 8)."""

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from fractions import Fraction

import pytest
from autokd_testing import seed_dict_config
from core_helpers import synthetic_metrics

import autokd
from autokd import AutoDistillation, Objective, TrialRecord
from autokd.cli import format_report, main
from autokd.errors import StoreError
from autokd.results import ResultStore, pareto_front, select_best


def make_agent(eval_func=synthetic_metrics, **search):
    agent = AutoDistillation(lambda arch: dict(arch), seed_dict_config(**search))
    agent.show_progress = False
    agent.train_func = lambda model: model
    agent.eval_func = eval_func
    return agent


def record_line(trial, hidden=128, heads=2, **extra):
    arch = {"hidden_size": hidden, "num_attention_heads": heads}
    return json.dumps({"trial": trial, "arch": arch, "metrics": synthetic_metrics(arch), "status": "ok", **extra})


def test_a_cut_off_last_line_is_dropped_by_an_atomic_rewrite(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text(record_line(0) + "\n" + record_line(1, 256) + "\n" + record_line(2, 256, 4)[:25])
    inode = os.stat(path).st_ino
    assert [r.trial for r in ResultStore(tmp_path).load()] == [0, 1]  # read only by default
    assert os.stat(path).st_ino == inode
    records = ResultStore(tmp_path).load(repair=True)
    assert [r.trial for r in records] == [0, 1]
    assert path.read_text() == record_line(0) + "\n" + record_line(1, 256) + "\n"
    assert os.stat(path).st_ino != inode  # replaced, not rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["trials.jsonl"]  # no temporary left behind


def test_a_last_record_without_its_newline_gets_one_so_appends_never_glue(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text(record_line(0) + "\n" + record_line(1, 256))
    agent = make_agent(max_trials=3)
    agent.search_loop(tmp_path, resume=True)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["trial"] for line in lines] == [0, 1, 2]


def test_append_adds_a_missing_newline_itself(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text(record_line(0))
    ResultStore(tmp_path).append(TrialRecord(1, {"hidden_size": 256, "num_attention_heads": 2}, {"accuracy": 0.5}))
    assert [json.loads(line)["trial"] for line in path.read_text().splitlines()] == [0, 1]


def test_report_never_modifies_the_store(tmp_path, capsys):
    make_agent(max_trials=2).search_loop(tmp_path)
    path = tmp_path / "trials.jsonl"
    cut = path.read_bytes() + record_line(2, 256, 4).encode()[:30]
    path.write_bytes(cut)

    def files():  # the store's files (best/ holds the saved student; report/ is the report's own)
        return {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path) if (tmp_path / name).is_file()}

    before = files()
    assert main(["report", str(tmp_path)]) == 0
    assert files() == before
    assert "pareto front: trials [0, 1]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[1, 2]", "not a trial record: expected a JSON object, got a list"),
        ("null", "not a trial record: expected a JSON object, got null"),
        (
            '{"trial": 1, "arch": "oops"}',
            "not a trial record: 'arch' must be an object of parameter values, got a string 'oops'",
        ),
        ('{"trial": "1", "arch": {}}', "not a trial record: 'trial' must be an integer, got a string '1'"),
        ('{"arch": {}}', "not a trial record: no 'trial' key"),
        ("{not json", "not JSON: Expecting property name enclosed in double quotes at column 2"),
        (b"\xff\xfe{}", "not UTF-8 text (invalid start byte at byte 0)"),
    ],
)
def test_an_unreadable_line_exits_2_with_file_line_and_why(tmp_path, capsys, line, why):
    line = line if isinstance(line, bytes) else line.encode()
    (tmp_path / "trials.jsonl").write_bytes(
        record_line(0).encode() + b"\n" + line + b"\n" + record_line(2).encode() + b"\n"
    )
    with pytest.raises(StoreError) as info:
        ResultStore(tmp_path).load()
    assert str(info.value).startswith(f"{tmp_path / 'trials.jsonl'}:2: {why}")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"autokd: error: {tmp_path / 'trials.jsonl'}:2: ") and "Traceback" not in err


def test_records_with_unknown_or_absent_new_keys_load(tmp_path):
    newer = json.dumps(
        {
            "trial": 0,
            "arch": {"hidden_size": 128, "num_attention_heads": 2},
            "metrics": {"accuracy": 0.2},
            "status": "ok",
            "budget": 0.25,
            "rung": 1,
            "candidate": 3,
            "phase": "final",
        }
    )
    older = json.dumps({"trial": 1, "arch": {"hidden_size": 256, "num_attention_heads": 2}})
    (tmp_path / "trials.jsonl").write_text(newer + "\n" + older + "\n")
    records = ResultStore(tmp_path).load()
    assert [(r.trial, r.status, r.metrics) for r in records] == [(0, "ok", {"accuracy": 0.2}), (1, "ok", {})]


@pytest.mark.parametrize("value", [Decimal("0.9"), Fraction(9, 10), 0.9])
def test_decimal_and_fraction_metrics_are_recorded_as_numbers_and_ranked(tmp_path, value):
    def evaluate(model):
        metrics = synthetic_metrics(model)
        if model["hidden_size"] * model["num_attention_heads"] == 1024:  # the biggest: best accuracy
            metrics["accuracy"] = value
        return metrics

    agent = make_agent(evaluate, max_trials=4)
    agent.search_loop(tmp_path)
    best = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    biggest = next(r for r in best if r["arch"] == {"hidden_size": 256, "num_attention_heads": 4})
    assert biggest["metrics"]["accuracy"] == 0.9 and biggest["status"] == "ok"
    assert agent.best_model_arch == {"hidden_size": 256, "num_attention_heads": 4}


def test_a_numeric_string_metric_fails_the_trial_with_the_reason(tmp_path):
    agent = make_agent(lambda model: {"accuracy": "0.9", "latency": 1.0}, max_trials=1)
    agent.search_loop(tmp_path)
    (record,) = agent.search_result
    assert record.status == "failed"
    assert record.error == (
        "FloatingPointError: non-finite or non-numeric metric accuracy='0.9' (str): objectives must be finite numbers"
    )


def test_summary_is_written_in_finally_even_on_ctrl_c(tmp_path):
    calls = []

    def evaluate(model):
        calls.append(model)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return synthetic_metrics(model)

    agent = make_agent(evaluate, max_trials=4)
    with pytest.raises(KeyboardInterrupt):
        agent.search_loop(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["trials"] == 2 and len((tmp_path / "trials.jsonl").read_text().splitlines()) == 2


def test_report_recomputes_front_and_best_from_the_records(tmp_path, capsys):
    make_agent(max_trials=2).search_loop(tmp_path)
    summary_path = tmp_path / "summary.json"
    stale = json.loads(summary_path.read_text())
    # A trial recorded after the summary (as after a kill): it dominates both.
    with open(tmp_path / "trials.jsonl", "a") as fh:
        fh.write(
            json.dumps(
                {
                    "trial": 2,
                    "arch": {"hidden_size": 256, "num_attention_heads": 4},
                    "metrics": {"accuracy": 0.99, "latency": 0.01},
                    "status": "ok",
                }
            )
            + "\n"
        )
    assert stale["best_trial"] != 2
    text = format_report(str(tmp_path))
    assert "pareto front: trials [2]" in text
    assert "best trial 2: {'hidden_size': 256, 'num_attention_heads': 4}" in text
    records = ResultStore(tmp_path).load(repair=False)
    objectives = [Objective("accuracy", True), Objective("latency", False)]
    assert [r.trial for r in pareto_front(records, objectives)] == [2]
    assert select_best(records, objectives)[0].trial == 2


@pytest.mark.parametrize("trials_file", ["missing", "empty"])
def test_a_run_without_resume_does_not_overwrite_a_summary(tmp_path, trials_file):
    (tmp_path / "summary.json").write_text('{"trials": 7}\n')
    if trials_file == "empty":
        (tmp_path / "trials.jsonl").write_text("")
    with pytest.raises(StoreError, match="summary.json already holds trials: resume them with resume=True"):
        make_agent(max_trials=1).search_loop(tmp_path)
    assert (tmp_path / "summary.json").read_text() == '{"trials": 7}\n'


REPAIR = """
import sys
from autokd.results import ResultStore
print("start", flush=True)
ResultStore(sys.argv[1]).load(repair=True)
print("done", flush=True)
"""


@pytest.mark.slow
def test_a_repair_killed_at_any_moment_leaves_the_old_or_the_repaired_store(tmp_path):
    """A 40 MB store with a cut-off last line, repaired by a subprocess that is killed
    with SIGKILL at moments spread over the repair: the file is always whole."""
    line = record_line(0, extras={"pad": "x" * 100_000}) + "\n"
    count = 150
    whole = line.encode() * count
    cut = whole + line.encode()[:100]
    script = tmp_path / "repair.py"
    script.write_text(REPAIR)
    store = tmp_path / "out"
    store.mkdir()

    def run(kill_after):
        (store / "trials.jsonl").write_bytes(cut)
        proc = subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "start\n"
        start = time.perf_counter()
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        return time.perf_counter() - start

    duration = run(None)
    assert (store / "trials.jsonl").read_bytes() == whole
    outcomes = {"old": 0, "repaired": 0}
    for i in range(8):
        run(duration * i / 8)
        data = (store / "trials.jsonl").read_bytes()
        assert data in (cut, whole), f"kill {i}: {len(data)} bytes"
        outcomes["old" if data == cut else "repaired"] += 1
    assert len(ResultStore(store).load(repair=True)) == count
    assert outcomes["old"] >= 1  # some kills did land before the repair finished


def test_a_fresh_run_that_failed_at_once_can_be_run_again_without_resume(tmp_path):
    agent = make_agent(max_trials=2, advisor_options={"nonsense": 1})
    with pytest.raises(autokd.ConfigError, match="advisor_options"):
        agent.search_loop(tmp_path)
    assert not (tmp_path / "summary.json").exists()  # the advisor failed before the loop
    (tmp_path / "summary.json").write_text('{"trials": 0}\n')  # as a run killed before its first trial leaves
    make_agent(max_trials=2).search_loop(tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["trials"] == 2
