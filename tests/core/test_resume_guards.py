"""One writer per output directory, resume only with a compatible config, advisors that
misbehave, metrics missing for one arch (#13, items 3, 4, 9, 10)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from autokd_testing import seed_dict_config
from core_helpers import synthetic_metrics

import autokd
from autokd import AutoDistillation
from autokd._lock import OutputDirLock
from autokd.errors import AdvisorError, StoreError


def make_agent(eval_func=synthetic_metrics, conf=None, **search):
    agent = AutoDistillation(lambda arch: dict(arch), conf or seed_dict_config(**search))
    agent.show_progress = False
    agent.train_func = lambda model: model
    agent.eval_func = eval_func
    return agent


def trials(path):
    return [json.loads(line) for line in (path / "trials.jsonl").read_text().splitlines()]


# --- the lock ---------------------------------------------------------------------------


def test_a_second_run_on_a_held_directory_exits_2_naming_it_and_the_holder(tmp_path):
    with OutputDirLock(tmp_path):
        with pytest.raises(StoreError) as info:
            make_agent(max_trials=1).search_loop(tmp_path, resume=True)
    assert str(info.value) == (
        f"{tmp_path} is in use by another autokd run (pid {os.getpid()}): wait for it to finish, "
        f"or use another output directory (--output-dir)"
    )
    assert not (tmp_path / "trials.jsonl").exists()
    make_agent(max_trials=1).search_loop(tmp_path, resume=True)  # released: usable again
    assert len(trials(tmp_path)) == 1


HOLDER = """
import sys, time
from autokd._lock import OutputDirLock
lock = OutputDirLock(sys.argv[1]); lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_the_lock_of_a_killed_run_does_not_block_the_resume(tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    with pytest.raises(StoreError, match=f"in use by another autokd run \\(pid {proc.pid}\\)"):
        make_agent(max_trials=1).search_loop(out, resume=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / ".autokd.lock.pid").read_text() == f"{proc.pid}\n"  # stale, and harmless
    make_agent(max_trials=2).search_loop(out, resume=True)
    assert [t["trial"] for t in trials(out)] == [0, 1]


def test_files_are_never_written_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "summary.json")
    os.symlink(victim, out / ".autokd.lock.pid")
    with pytest.raises(StoreError, match="summary.json already holds trials"):
        make_agent(max_trials=1).search_loop(out)
    (out / "summary.json").unlink()
    make_agent(max_trials=1).search_loop(out)
    assert victim.read_text() == "precious\n"
    assert not (out / "summary.json").is_symlink() and json.loads((out / "summary.json").read_text())["trials"] == 1


# --- resume compatibility ------------------------------------------------------------------


def first_run(tmp_path, **search):
    make_agent(max_trials=2, **search).search_loop(tmp_path)
    return trials(tmp_path)


@pytest.mark.parametrize("with_summary", [True, False])
@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"search_space": {"hidden_size": [64], "num_attention_heads": [2, 4]}}, "search_space.hidden_size: "),
        (
            {"search_space": {"hidden_size": [128, 256], "num_attention_heads": [2, 4], "layers": [2]}},
            "search_space.layers: ",
        ),
        ({"search_space": {"hidden_size": [128, 256]}}, "search_space.num_attention_heads: "),
        ({"metrics": ["acc", "latency"]}, "acc"),
    ],
)
def test_resume_with_a_changed_space_or_objective_is_refused_saying_what_changed(tmp_path, change, why, with_summary):
    recorded = first_run(tmp_path, search_space={"hidden_size": [128, 256], "num_attention_heads": [2, 4]})
    if not with_summary:
        (tmp_path / "summary.json").unlink()
    with pytest.raises(StoreError) as info:
        make_agent(max_trials=4, **change).search_loop(tmp_path, resume=True)
    message = str(info.value)
    assert message.startswith(f"cannot resume the trials in {tmp_path}: the config changed since they were recorded:")
    assert why in message and message.endswith("for a different search, use a new output directory (--output-dir).")
    assert trials(tmp_path) == recorded  # nothing written


def test_a_flipped_direction_is_refused(tmp_path):
    first_run(tmp_path)
    with pytest.raises(
        StoreError,
        match=r"metrics / higher_is_better: recorded \[accuracy \(higher is better\), "
        r"latency \(lower is better\)\], configured \[accuracy \(higher is better\), "
        r"latency \(higher is better\)\]",
    ):
        make_agent(max_trials=4, higher_is_better=[True, True]).search_loop(tmp_path, resume=True)


def test_a_widened_choice_list_resumes(tmp_path):
    first_run(tmp_path, search_space={"hidden_size": [128], "num_attention_heads": [2, 4]})
    agent = make_agent(max_trials=4, search_space={"hidden_size": [128, 256], "num_attention_heads": [2, 4]})
    agent.search_loop(tmp_path, resume=True)
    assert [t["trial"] for t in trials(tmp_path)] == [0, 1, 2, 3]
    assert len({json.dumps(t["arch"], sort_keys=True) for t in trials(tmp_path)}) == 4


# --- advisors ---------------------------------------------------------------------------


def advisor_plugin(ask=None, tell=None):
    class Bad(autokd.RandomAdvisor):
        def ask(self):
            return ask(self) if ask else super().ask()

        def tell(self, arch, values):
            if tell:
                tell(arch)
            super().tell(arch, values)

    class Plugin:
        @autokd.hookimpl
        def register_advisors(self, register):
            register("bad", Bad)

    autokd.plugins.add_plugin(Plugin(), "bad-plugin")


@pytest.mark.parametrize(
    ("ask", "why"),
    [
        (
            lambda self: {"hidden_size": 999, "num_attention_heads": 2},
            "proposed a point outside the search space: point {'hidden_size': 999, 'num_attention_heads': 2} is not in "
            "the search space: not a choice: hidden_size=999 (choices: [128, 256])",
        ),
        (
            lambda self: {"hidden_size": 128, "num_attention_heads": 2, "extra": 1},
            "proposed a point outside the search space: point {'hidden_size': 128, 'num_attention_heads': 2, "
            "'extra': 1} is not in the search space: not in the space ['extra']",
        ),
        (lambda self: [128, 2], "proposed list [128, 2] from ask(); an advisor must return a dict"),
        (lambda self: 1 / 0, "failed in ask(): ZeroDivisionError: division by zero"),
    ],
)
def test_an_advisor_that_misbehaves_in_ask_is_named(tmp_path, ask, why):
    advisor_plugin(ask=ask)
    with pytest.raises(AdvisorError) as info:
        make_agent(max_trials=2, search_algorithm="bad").search_loop(tmp_path)
    assert str(info.value).startswith(f"advisor 'bad' (plugin 'bad-plugin') {why}")


def test_a_tell_that_raises_names_the_advisor_and_the_trial_stays_resumable(tmp_path, caplog):
    def tell(arch):
        if arch == {"hidden_size": 256, "num_attention_heads": 4}:
            raise RuntimeError("cannot learn this one")

    advisor_plugin(tell=tell)
    with pytest.raises(AdvisorError) as info:
        make_agent(max_trials=4, search_algorithm="bad").search_loop(tmp_path)
    assert str(info.value).startswith(
        "advisor 'bad' (plugin 'bad-plugin') failed in tell() for {'hidden_size': 256, 'num_attention_heads': 4}: "
        "RuntimeError: cannot learn this one. The trial is recorded"
    )
    stored = trials(tmp_path)
    assert stored[-1]["arch"] == {"hidden_size": 256, "num_attention_heads": 4}
    make_agent(max_trials=4, search_algorithm="bad").search_loop(tmp_path, resume=True)
    after = trials(tmp_path)
    assert after[: len(stored)] == stored and [t["trial"] for t in after] == [0, 1, 2, 3]
    assert len({json.dumps(t["arch"], sort_keys=True) for t in after}) == 4
    assert "advisor 'bad' (plugin 'bad-plugin') failed in tell() replaying" in caplog.text


# --- a metric missing for one arch ------------------------------------------------------


def test_a_metric_missing_for_one_arch_fails_that_trial_only(tmp_path):
    def evaluate(model):
        metrics = synthetic_metrics(model)
        if model == {"hidden_size": 256, "num_attention_heads": 2}:
            del metrics["latency"]
        return metrics

    # Two trials, then a resume reaches the arch eval_func leaves latency out for: that
    # trial fails and the search goes on (it used to stop there, at every resume).
    make_agent(evaluate, seed_dict_config(max_trials=2, search_algorithm="grid")).search_loop(tmp_path)
    make_agent(evaluate, seed_dict_config(max_trials=4, search_algorithm="grid")).search_loop(tmp_path, resume=True)
    statuses = [(t["arch"]["hidden_size"], t["arch"]["num_attention_heads"], t["status"]) for t in trials(tmp_path)]
    assert statuses == [(128, 2, "ok"), (128, 4, "ok"), (256, 2, "failed"), (256, 4, "ok")]
    assert trials(tmp_path)[2]["error"] == (
        "LookupError: metric 'latency' is neither returned by eval_func (it returned ['accuracy']) nor a registered "
        "evaluator. Earlier trials had it: eval_func left it out for this arch"
    )


def test_a_metric_no_trial_ever_has_and_no_evaluator_computes_stops_the_search(tmp_path):
    agent = make_agent(lambda model: {"accuracy": 0.5}, max_trials=3)
    with pytest.raises(autokd.AutoKDError, match="metric 'latency' is neither returned by eval_func"):
        agent.search_loop(tmp_path)
    assert not (tmp_path / "trials.jsonl").exists()


# --- two processes at once --------------------------------------------------------------

SLOW_USER = """
import pathlib, time
def build(arch):
    return dict(arch)
def train(model):
    # Hold the run (and its lock) until the test lets go, however loaded the machine is.
    while not pathlib.Path("release").exists():
        time.sleep(0.02)
    return model
def evaluate(model):
    size = model["hidden_size"] * model["num_attention_heads"]
    return {"accuracy": 1 - 100.0 / size, "latency": size / 100.0}
"""

SLOW_CONFIG = """
model: {name: slow, builder: "slowfuncs:build"}
auto_distillation:
  search:
    search_space: {hidden_size: [128, 256, 512], num_attention_heads: [2, 4]}
    search_algorithm: random
    metrics: [accuracy, latency]
    max_trials: 6
    seed: 1
train: {function: "slowfuncs:train"}
evaluation: {function: "slowfuncs:evaluate"}
"""


def test_two_runs_on_one_directory_one_exits_2_and_no_trial_is_recorded_twice(tmp_path):
    (tmp_path / "slowfuncs.py").write_text(SLOW_USER)
    (tmp_path / "search.yaml").write_text(textwrap.dedent(SLOW_CONFIG))
    cmd = [sys.executable, "-m", "autokd.cli", "run", "search.yaml", "--output-dir", "out", "--resume", "--no-progress"]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "out" / ".autokd.lock.pid"
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text().strip() == str(first.pid):
            break
        subprocess.run(["sleep", "0.05"])
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    (tmp_path / "release").write_text("")
    assert second.returncode == 2
    assert second.stderr == (
        f"autokd: error: out is in use by another autokd run (pid {first.pid}): wait for it to finish, "
        f"or use another output directory (--output-dir)\n"
    )
    assert first.wait(timeout=120) == 0
    recorded = trials(tmp_path / "out")
    assert [t["trial"] for t in recorded] == list(range(6))
    assert len({json.dumps(t["arch"], sort_keys=True) for t in recorded}) == 6


def test_a_constraint_on_a_registered_evaluator_is_computed_in_every_trial(tmp_path):
    class Params:
        @autokd.hookimpl
        def register_evaluators(self, register):
            register("params", lambda model, ctx: float(model["hidden_size"] * model["num_attention_heads"]))

    autokd.plugins.add_plugin(Params(), "params-plugin")
    conf = seed_dict_config(max_trials=4, search_algorithm="grid", constraints=["params <= 600"])
    agent = make_agent(conf=conf)  # params is neither an objective nor in evaluation.record
    agent.search_loop(tmp_path)
    assert [t["metrics"]["params"] for t in trials(tmp_path)] == [256.0, 512.0, 512.0, 1024.0]
    # Unconstrained, 256 x 4 has the best accuracy; meeting params <= 600, 128 x 4 and
    # 256 x 2 tie (size 512) and the earlier trial wins.
    assert agent.best_model_arch == {"hidden_size": 128, "num_attention_heads": 4}
