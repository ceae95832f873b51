"""The ``output:`` section and the saved students, core side: which trials are saved
where, ``metrics.json``, the model card, the backend hook, without any framework."""

from __future__ import annotations

import json
import os

import pytest
from core_helpers import synthetic_metrics

import autokd
from autokd import plugins
from autokd.results import pareto_front

SPACE = {"hidden_size": [64, 128, 256], "num_attention_heads": [1, 2, 4]}


def config(**output):
    return {
        "model": {"name": "tiny", "teacher": "teachers:big"},
        "auto_distillation": {
            "search": {
                "search_space": SPACE,
                "search_algorithm": "grid",
                "metrics": ["accuracy", "latency"],
                "higher_is_better": [True, False],
                "max_trials": 5,
                "seed": 0,
            }
        },
        "output": output,
    }


class DictBackend:
    """A third-party backend whose students are dicts, saved as JSON."""

    framework = "pytorch"

    def __init__(self):
        self.saved = []

    def search_functions(self, config, *, output_dir, model_builder=None, train_func=None, eval_func=None):
        raise AssertionError("not used: the tests give their own functions")

    def save_student(self, model, directory, *, record, context):
        self.saved.append((record.trial, directory))
        with open(os.path.join(directory, "student.json"), "w") as fh:
            json.dump(model, fh)
        return {"format": "json", "files": ["student.json"], "load": "json.load(open('student.json'))"}


def front_metrics(arch):
    """Accuracy from the width only, latency from width x heads: more heads are dominated."""
    return {
        "accuracy": 1 - 10 / arch["hidden_size"],
        "latency": arch["hidden_size"] * arch["num_attention_heads"] / 100,
    }


def run(tmp_path, backend=None, teacher=None, metrics=synthetic_metrics, **output):
    agent = autokd.AutoDistillation(lambda arch: {"arch": arch, "trained": False}, config(**output))

    def train(model):
        return {**model, "trained": True}  # advanced mode: train_func returns the trained model

    agent.train_func = train
    agent.eval_func = lambda model: metrics(model["arch"]) if "arch" in model else {"accuracy": 0.99, "latency": 20.0}
    agent.backend = backend
    agent.teacher = teacher
    agent.show_progress = False
    agent.search_loop(tmp_path / "out")
    return agent


def test_output_defaults_and_bad_values():
    assert autokd.load_config(config()).output == autokd.OutputConfig("best", False, "none")
    with pytest.raises(autokd.ConfigError) as err:
        autokd.load_config(config(save="all", quantize="int4", extra=1))
    assert "output.save: expected one of best, front, none, got 'all'" in str(err.value)
    assert "output.quantize: expected one of none, dynamic_int8, static_int8, got 'int4'" in str(err.value)
    assert "output.extra" in str(err.value)
    with pytest.raises(
        autokd.ConfigError, match="output.quantize: dynamic_int8 quantises the ONNX copy: set output.onnx: true"
    ):
        autokd.load_config(config(quantize="dynamic_int8"))
    with pytest.raises(
        autokd.ConfigError, match="output.onnx: true exports the saved students, but output.save is none"
    ):
        autokd.load_config(config(save="none", onnx=True))


def test_best_student_saved_by_the_backend_with_metrics_and_card(tmp_path):
    backend = DictBackend()
    agent = run(tmp_path, backend, teacher={"teacher": True})
    best = agent.summary()["best_trial"]
    directory = tmp_path / "out" / "best"
    assert backend.saved == [(best, str(directory))]
    # the trained model (train_func's return value) is what was saved
    assert json.loads((directory / "student.json").read_text()) == {"arch": agent.best_model_arch, "trained": True}
    info = json.loads((directory / "metrics.json").read_text())
    record = agent.search_result[best]
    assert info["trial"] == best and info["phase"] == "search" and info["arch"] == record.arch
    assert info["metrics"] == record.metrics
    assert info["teacher_metrics"] == {"accuracy": 0.99, "latency": 20.0}
    assert info["weights"]["format"] == "json"
    card = (directory / "README.md").read_text()
    assert card.startswith(f"# tiny student: trial {best} (the chosen student)")
    assert "distilled from `teachers:big`" in card
    accuracy = record.metrics["accuracy"]
    assert f"| accuracy | {accuracy:.4g} | 0.99 | {accuracy / 0.99:.3f} |" in card
    latency = record.metrics["latency"]
    assert f"| latency | {latency:.4g} | 20 | {latency / 20:.3f} |" in card
    assert "| hidden_size | 256 |" in card or "| hidden_size | 128 |" in card or "| hidden_size | 64 |" in card
    assert "search_algorithm: grid" in card  # the config
    assert "Command:" in card and "Saved 20" in card  # the command and the date
    assert not (tmp_path / "out" / "front").exists()


def test_save_front_saves_each_front_member_and_keeps_only_their_models(tmp_path):
    backend = DictBackend()
    agent = run(tmp_path, backend, metrics=front_metrics, save="front")
    front = {r.trial for r in pareto_front(agent.search_result, agent.objectives)}
    assert len(front) >= 2 and len(front) < len(agent.search_result)
    saved = sorted(os.listdir(tmp_path / "out" / "front"))
    assert saved == sorted(f"trial-{t}" for t in front)
    for trial in front:
        info = json.loads((tmp_path / "out" / "front" / f"trial-{trial}" / "metrics.json").read_text())
        assert info["trial"] == trial and info["metrics"] == agent.search_result[trial].metrics
    assert set(agent.runner.held()) == front  # dominated students were let go during the search


def test_save_none_saves_nothing_and_keeps_no_model(tmp_path):
    agent = run(tmp_path, DictBackend(), save="none")
    assert not (tmp_path / "out" / "best").exists() and agent.saved_students == []


def test_without_a_backend_metrics_and_card_are_still_written(tmp_path, caplog):
    agent = run(tmp_path)  # the core alone: no backend registered for pytorch
    directory = tmp_path / "out" / "best"
    info = json.loads((directory / "metrics.json").read_text())
    assert info["weights"] is None and info["teacher_metrics"] is None
    assert info["trial"] == agent.summary()["best_trial"]
    card = (directory / "README.md").read_text()
    assert "The weights were not saved" in card and "not measured" in card
    assert "no installed backend saves trial" in caplog.text


def test_a_backend_that_fails_to_save_does_not_lose_the_search(tmp_path):
    class Broken(DictBackend):
        def save_student(self, model, directory, *, record, context):
            raise RuntimeError("disk full")

    agent = run(tmp_path, Broken())
    info = json.loads((tmp_path / "out" / "best" / "metrics.json").read_text())
    assert info["weights"] is None and info["weights_error"] == "RuntimeError: disk full"
    assert len(agent.search_result) == 5


def test_the_registered_backend_saves_when_none_is_given(tmp_path):
    backend = DictBackend()

    class Plugin:
        @autokd.hookimpl
        def register_trainers(self, register):
            register("pytorch", backend)

    plugins.add_plugin(Plugin(), "dictbackend")
    agent = run(tmp_path)
    assert backend.saved == [(agent.summary()["best_trial"], str(tmp_path / "out" / "best"))]


def test_onnx_without_the_plugin_is_refused_before_training(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "autokd_onnx" else real(name, *a))
    trained = []
    agent = autokd.AutoDistillation(lambda arch: arch, config(onnx=True))
    agent.train_func = trained.append
    agent.eval_func = synthetic_metrics
    with pytest.raises(
        autokd.ConfigError, match="output.onnx: true needs the autokd-onnx plugin: pip install autokd-onnx"
    ):
        agent.search_loop(tmp_path / "out")
    assert trained == []


def test_budgets_and_final_phase_choose_what_is_saved():
    from autokd.output import students_to_save

    objectives = [autokd.Objective("accuracy", True)]

    def rec(trial, acc, **fields):
        return autokd.TrialRecord(trial, {"h": trial}, {"accuracy": acc}, **fields)

    low_budget_best = [rec(0, 0.99, budget=0.25), rec(1, 0.8, budget=1.0), rec(2, 0.7)]
    assert [(r.trial, d) for r, d in students_to_save(low_budget_best, objectives, [], "best")] == [(1, "best")]
    with_final = low_budget_best + [rec(3, 0.75, phase="final", budget=1.0)]
    # the best comes from the final distillation; the front is the search's full-budget one
    assert [(r.trial, d) for r, d in students_to_save(with_final, objectives, [], "front")] == [
        (3, "best"),
        (1, os.path.join("front", "trial-1")),
    ]


def test_the_teachers_hardware_metrics_come_from_the_registered_evaluators(tmp_path):
    class Latency:
        @autokd.hookimpl
        def register_evaluators(self, register):
            register("latency", lambda model, ctx: 50.0 if model.get("teacher") else 1.0)

    plugins.add_plugin(Latency(), "latency-plugin")
    # eval_func gives accuracy only: latency comes from the evaluator, for the trials and
    # for the teacher the model card compares with
    teacher = {"teacher": True, "arch": {}}
    agent = run(tmp_path, DictBackend(), teacher=teacher, metrics=lambda arch: {"accuracy": 0.5})
    info = json.loads((tmp_path / "out" / "best" / "metrics.json").read_text())
    assert info["teacher_metrics"] == {"accuracy": 0.5, "latency": 50.0}
    assert agent.search_result[0].metrics == {"accuracy": 0.5, "latency": 1.0}
