"""Type-checked, never run: the core's public API used as the docs and the plugins use
it. ``mypy`` (the ``lint`` tox env) checks this file and ``autokd/__init__.py`` against
the core's annotations, so a renamed keyword, a changed return type or a name dropped
from ``autokd.__all__`` fails the lint."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import autokd
from autokd import (
    Advisor,
    AutoDistillation,
    Config,
    ConfigError,
    EvalContext,
    LazyObject,
    Objective,
    SearchSpace,
    TeacherCacheConfig,
    TrainConfig,
    TrialRecord,
    import_object,
    lazy_module_attrs,
    lazy_object,
    load_config,
    pareto_front,
    registry,
    resolve_lazy,
    select_best,
    stage_fractions,
    stage_steps,
)


class FirstPoint(Advisor):
    def ask(self) -> dict:
        return next(iter(self.space.points()))

    def tell(self, arch: dict, values: Sequence[float] | None) -> None:
        pass


def evaluate(model: Any) -> dict[str, float]:
    return {"accuracy": 0.5}


def search(doc: dict[str, Any]) -> dict | None:
    config: Config = load_config(doc, "pytorch", plugins=registry())
    agent = AutoDistillation(
        lambda arch: arch,
        config,
        train_func=lambda model: model,
        eval_func=evaluate,
        example_inputs=None,
        eval_data=None,
        show_progress=False,
    )
    agent.eval_func = evaluate  # settable, as the design does
    best: dict | None = agent.search_loop("out", resume=False)
    front: list[TrialRecord] = agent.pareto_front
    records: list[TrialRecord] = agent.search_result
    chosen, feasible = select_best(records, agent.objectives, agent.constraints)
    assert isinstance(feasible, bool) and (chosen is None or chosen in pareto_front(records, agent.objectives))
    assert front is not None
    return best


def plugin_side() -> None:
    space = SearchSpace({"hidden_size": [128, 256]})
    advisor = FirstPoint(space, [Objective("accuracy", True)], seed=0)
    point: dict = advisor.ask()
    key: str = space.key(point)
    assert key and space.sample(random.Random(0)) in list(space.points())
    builder = import_object("package.module:function", "model.builder", callable_=True)
    stand_in: LazyObject = lazy_object("package.module:function")
    assert resolve_lazy(stand_in) is not builder
    getattr_, dir_ = lazy_module_attrs("package", {"Name": "module", "submodule": None})
    names: list[str] = dir_()
    assert getattr_("Name") is not None and names
    context = EvalContext(example_inputs=None, eval_data=None, options={})
    assert context.options == {}
    train = TrainConfig(batch_size=8, teacher_cache=TeacherCacheConfig(enabled=False))
    steps: list[int] = [stage_steps(100, 0.0, fraction) for fraction in stage_fractions(0.5, 2)]
    assert train.batch_size == 8 and steps
    error = ConfigError(["model.builder: missing"], "search.yaml")
    assert isinstance(error, autokd.AutoKDError)
