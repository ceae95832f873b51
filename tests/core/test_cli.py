"""The ``autokd`` command: exit codes and output."""

import json
import subprocess
import sys

import pytest

USER_MODULE = """
def build(arch, scale=1):
    return dict(arch, scale=scale)

def train(model):
    return model

def evaluate(model):
    size = model["hidden_size"] * model["num_attention_heads"] * model["scale"]
    return {"accuracy": 1 - 100.0 / size, "latency": size / 100.0}
"""

CONFIG = """
model:
  name: tiny
  framework: pytorch
  builder: "userfuncs:build"
  builder_options: {scale: 1}
auto_distillation:
  search:
    search_space: {hidden_size: [128, 256], num_attention_heads: [2, 4]}
    search_algorithm: random
    metrics: [accuracy, latency]
    higher_is_better: [true, false]
    max_trials: 3
    seed: 1
train:
  function: "userfuncs:train"
evaluation:
  function: "userfuncs:evaluate"
"""


def autokd(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "autokd.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def project(tmp_path):
    (tmp_path / "userfuncs.py").write_text(USER_MODULE)
    (tmp_path / "search.yaml").write_text(CONFIG)
    return tmp_path


def test_run_with_user_functions_needs_no_backend(project):
    result = autokd("run", "search.yaml", "--output-dir", "out", "--no-progress", cwd=project)
    assert result.returncode == 0, result.stderr
    trials = [json.loads(line) for line in (project / "out" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 3 and all(t["status"] == "ok" for t in trials)
    assert "pareto front: trials" in result.stdout and "best trial" in result.stdout
    assert "torch" not in result.stderr


def test_max_trials_and_resume(project):
    assert (
        autokd(
            "run", "search.yaml", "--output-dir", "out", "--max-trials", "1", "--no-progress", cwd=project
        ).returncode
        == 0
    )
    again = autokd("run", "search.yaml", "--output-dir", "out", "--no-progress", cwd=project)
    assert again.returncode == 2 and "already holds trials" in again.stderr and "Traceback" not in again.stderr
    resumed = autokd("run", "search.yaml", "--output-dir", "out", "--resume", "--no-progress", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    trials = [json.loads(line) for line in (project / "out" / "trials.jsonl").read_text().splitlines()]
    assert [t["trial"] for t in trials] == [0, 1, 2]
    assert len({json.dumps(t["arch"], sort_keys=True) for t in trials}) == 3


def test_seed_override_changes_proposals(project):
    def archs(out):
        return [json.loads(x)["arch"] for x in (project / out / "trials.jsonl").read_text().splitlines()]

    autokd("run", "search.yaml", "--output-dir", "a", "--seed", "5", "--no-progress", cwd=project)
    autokd("run", "search.yaml", "--output-dir", "b", "--seed", "5", "--no-progress", cwd=project)
    autokd("run", "search.yaml", "--output-dir", "c", "--no-progress", cwd=project)  # the config's seed 1
    assert archs("a") == archs("b")  # the same seed, the same proposals
    assert archs("a") != archs("c")  # --seed 5 is not the config's seed 1
    assert json.loads((project / "a" / "summary.json").read_text())["seed"] == 5
    assert json.loads((project / "c" / "summary.json").read_text())["seed"] == 1


def test_bad_config_exits_2_naming_each_field(project):
    (project / "bad.yaml").write_text(
        CONFIG.replace("max_trials: 3", "max_trials: 3,").replace("seed: 1", "seed: 1\n    colour: red")
    )
    result = autokd("run", "bad.yaml", cwd=project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "auto_distillation.search.max_trials: expected an integer, got str '3,'" in result.stderr
    assert "auto_distillation.search.colour: unknown key" in result.stderr


def test_unknown_algorithm_exits_2_with_the_provider(project):
    (project / "bo.yaml").write_text(CONFIG.replace("search_algorithm: random", "search_algorithm: nevergrad"))
    result = autokd(
        "run",
        "bo.yaml",
        cwd=project,
    )
    env_has_nevergrad = (
        "autokd-nevergrad"
        in subprocess.run([sys.executable, "-m", "pip", "list"], capture_output=True, text=True).stdout
    )
    if env_has_nevergrad:
        pytest.skip("autokd-nevergrad is installed here")
    assert result.returncode == 2
    assert "auto_distillation.search.search_algorithm: unknown advisor 'nevergrad'" in result.stderr
    assert "pip install autokd-nevergrad" in result.stderr


def test_bad_import_string_exits_2(project):
    (project / "imp.yaml").write_text(CONFIG.replace("userfuncs:train", "userfuncs:nothing"))
    result = autokd("run", "imp.yaml", cwd=project)
    assert result.returncode == 2
    assert "train.function: module 'userfuncs' has no attribute 'nothing'" in result.stderr


def test_missing_backend_is_explained(project, monkeypatch):
    (project / "oob.yaml").write_text(CONFIG.replace('  function: "userfuncs:train"\n', "  batch_size: 8\n"))
    result = subprocess.run(
        [sys.executable, "-m", "autokd.cli", "run", "oob.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "AUTOKD_LOAD_PLUGINS": "none"},
    )
    assert result.returncode == 2
    assert "train.function: not given, so the pytorch backend's built-in functions are needed" in result.stderr
    assert "pip install autokd-torch" in result.stderr


def test_report_prints_table_front_and_best(project):
    autokd("run", "search.yaml", "--output-dir", "out", "--no-progress", cwd=project)
    result = autokd("report", "out", cwd=project)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "trial",
        "hidden_size",
        "num_attention_heads",
        "accuracy",
        "latency",
        "status",
        "time_s",
    ]
    assert len([line for line in lines if line[:1].isdigit()]) == 3
    summary = json.loads((project / "out" / "summary.json").read_text())
    assert f"best trial {summary['best_trial']}: {summary['best_model_arch']}" in result.stdout
    missing = autokd("report", "nowhere", cwd=project)
    assert missing.returncode == 2 and "nowhere: no such output directory" in missing.stderr


def test_plugins_lists_each_plugin_and_its_registrations(project):
    result = autokd("plugins", cwd=project)
    assert result.returncode == 0
    assert "autokd: autokd 0.1.0" in result.stdout
    assert "advisors: random (aliases: random_search), grid (aliases: grid_search)" in result.stdout


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("autokd") or str(__import__("pathlib").Path(sys.executable).parent / "autokd")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "run" in result.stdout and "report" in result.stdout


def test_fidelity_with_a_budget_less_train_function_exits_2_before_any_training(project):
    fidelity = "    seed: 1\n    fidelity: {schedule: successive_halving, min_fraction: 0.5, eta: 2}"
    (project / "sh.yaml").write_text(CONFIG.replace("    seed: 1", fidelity))
    result = autokd("run", "sh.yaml", "--output-dir", "out", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "auto_distillation.search.fidelity: the train function train takes no `budget` parameter" in result.stderr
    assert not (project / "out" / "trials.jsonl").exists()
    (project / "userfuncs.py").write_text(USER_MODULE.replace("def train(model):", "def train(model, budget):"))
    result = autokd("run", "sh.yaml", "--output-dir", "out", "--no-progress", cwd=project)
    assert result.returncode == 0, result.stderr
    trials = [json.loads(line) for line in (project / "out" / "trials.jsonl").read_text().splitlines()]
    # 3 candidates at half the steps, the best one (3 // 2) continued to the full budget
    assert [(t["rung"], t["budget"]) for t in trials] == [(0, 0.5)] * 3 + [(1, 1.0)]
