"""``NevergradAdvisor`` on its own: what nevergrad is told (signs, failure penalties
worked out by hand), archs told without being asked, repeats, and the options."""

from __future__ import annotations

import math

import pytest
from nevergrad_helpers import SPACE, accuracy

import autokd
from autokd_nevergrad import NevergradAdvisor

ACCURACY = autokd.Objective("accuracy", True)
LATENCY = autokd.Objective("latency", False)
WIDTHS = {"width": [1, 2, 3, 4, 5, 6]}


def _record_tells(advisor):
    """Every tell nevergrad receives, as (width, losses): losses is the multi-objective
    vector nevergrad stores, or the single loss."""
    told = []

    def on_tell(optimizer, candidate, loss):
        losses = candidate.losses
        told.append(
            (advisor._arch(candidate.value)["width"], tuple(float(v) for v in losses) if losses.size > 1 else loss)
        )

    advisor.optimizer.register_callback("tell", on_tell)
    return told


def test_failures_get_worst_loss_plus_spread_and_wait_for_a_first_success():
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY], seed=0, optimizer="DE")
    told = _record_tells(advisor)

    advisor.tell({"width": 1}, None)
    assert told == []  # no success yet: no scale for a penalty, the failure waits
    advisor.tell({"width": 2}, [0.8])
    # accuracy is negated; the waiting failure: worst -0.8 plus max(|-0.8|, 1) as all are equal
    assert told == [(2, -0.8), (1, pytest.approx(0.2, abs=1e-12))]
    advisor.tell({"width": 3}, [0.5])
    advisor.tell({"width": 4}, None)
    # worst -0.5, best -0.8: -0.5 + 0.3
    assert told[2:] == [(3, -0.5), (4, pytest.approx(-0.2, abs=1e-12))]
    # Archs the optimizer never asked for are told as spawned children.
    assert advisor.optimizer.num_tell_not_asked == 4
    assert advisor.history == [
        ({"width": 1}, None),
        ({"width": 2}, (0.8,)),
        ({"width": 3}, (0.5,)),
        ({"width": 4}, None),
    ]


def test_failure_penalty_for_a_lower_is_better_metric():
    advisor = NevergradAdvisor(WIDTHS, [LATENCY], seed=0, optimizer="DE")
    told = _record_tells(advisor)
    advisor.tell({"width": 1}, [5.0])
    advisor.tell({"width": 2}, None)  # 5 + max(5, 1)
    advisor.tell({"width": 3}, [3.0])
    advisor.tell({"width": 4}, None)  # worst 5, best 3: 5 + 2
    assert told == [(1, 5.0), (2, 10.0), (3, 3.0), (4, 7.0)]


def test_failure_penalty_with_two_objectives_is_per_objective():
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY, LATENCY], seed=0, optimizer="DE")
    told = _record_tells(advisor)
    advisor.tell({"width": 1}, [0.8, 5.0])
    advisor.tell({"width": 2}, [0.6, 3.0])
    advisor.tell({"width": 3}, None)
    assert told[0][1] == (-0.8, 5.0) and told[1][1] == (-0.6, 3.0)
    assert told[2][0] == 3
    assert told[2][1] == pytest.approx((-0.4, 7.0), abs=1e-12)  # (-0.6 + 0.2, 5 + 2)


def test_failure_values_option_sets_the_penalty_in_metric_terms():
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY, LATENCY], seed=0, optimizer="DE", failure_values=[0.0, 1000.0])
    told = _record_tells(advisor)
    advisor.tell({"width": 1}, None)  # told at once: the penalty needs no scale
    assert told == [(1, (0.0, 1000.0))]


def test_values_that_are_not_one_finite_number_per_metric_are_refused():
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY], seed=0, optimizer="DE")
    with pytest.raises(ValueError) as excinfo:
        advisor.tell({"width": 1}, [0.1, 0.2])
    assert str(excinfo.value) == (
        "nevergrad advisor: tell(arch, values): values has 2 values, expected one per metric ['accuracy']"
    )
    with pytest.raises(ValueError) as excinfo:
        advisor.tell({"width": 1}, [math.nan])
    assert str(excinfo.value) == (
        "nevergrad advisor: tell(arch, values): values must be finite numbers, got accuracy=nan "
        "(a failed trial is told as None)"
    )
    with pytest.raises(autokd.SearchSpaceError):
        advisor.tell({"width": 7}, [0.1])
    assert advisor.history == []  # nothing half-told


def test_every_ask_is_untold_until_the_space_is_exhausted():
    # OnePlusOne keeps re-proposing its incumbent on a tiny space: with max_repeats=1 the
    # advisor soon proposes untold archs from its own RNG.
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY], seed=4, optimizer="OnePlusOne", max_repeats=1)
    widths = []
    for _ in range(6):
        arch = advisor.ask()
        widths.append(arch["width"])
        advisor.tell(arch, [arch["width"] / 6])
    assert sorted(widths) == [1, 2, 3, 4, 5, 6]
    assert advisor.fallback_proposals > 0
    with pytest.raises(autokd.SearchExhausted):
        advisor.ask()


def test_an_arch_in_flight_is_not_proposed_twice():
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY], seed=0, optimizer="DE", num_workers=2)
    first, second = advisor.ask(), advisor.ask()
    assert first != second
    advisor.tell(second, [0.5])
    advisor.tell(first, [0.7])
    assert advisor.optimizer.num_tell_not_asked == 0  # both answered as the candidates asked


def test_options_reach_the_optimizer():
    advisor = NevergradAdvisor(SPACE, [ACCURACY], seed=0, optimizer="cma", budget=30, num_workers=2)
    assert advisor.optimizer_name == "CMA"
    assert (advisor.optimizer.budget, advisor.optimizer.num_workers) == (30, 2)
    # nevergrad names a Choice that takes its most likely choice "SoftmaxSampling{det}".
    assert all("SoftmaxSampling{det}" in advisor.parametrization[name].name for name in SPACE)


@pytest.mark.parametrize("deterministic", [True, False])
def test_choices_sampled_or_not_are_reproducible(deterministic):
    def run():
        advisor = NevergradAdvisor(SPACE, [ACCURACY], seed=9, optimizer="NGOpt", deterministic=deterministic)
        archs = []
        for _ in range(8):
            arch = advisor.ask()
            advisor.tell(arch, [accuracy(arch)])
            archs.append(arch)
        return archs

    archs = run()
    assert run() == archs
    assert len({SPACE.key(a) for a in archs}) == 8


@pytest.mark.filterwarnings("ignore::nevergrad.common.errors.InefficientSettingsWarning")
def test_an_optimizer_that_needs_a_budget_says_so():
    # nevergrad's BO asserts a budget deep inside its first tell.
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY], seed=0, optimizer="BO")
    with pytest.raises(autokd.AutoKDError) as excinfo:
        advisor.tell({"width": 3}, [0.5])
    assert str(excinfo.value) == (
        "nevergrad optimizer 'BO' failed to learn a told arch (AssertionError): some nevergrad optimizers "
        "need a budget: set search.advisor_options.budget (e.g. to max_trials), or choose another "
        "search.advisor_options.optimizer"
    )
    NevergradAdvisor(WIDTHS, [ACCURACY], seed=0, optimizer="BO", budget=6).tell({"width": 3}, [0.5])


def test_an_optimizer_that_cannot_learn_unasked_archs_still_never_proposes_them():
    # EDA only learns from its own proposals: a replayed arch is kept out all the same.
    advisor = NevergradAdvisor(WIDTHS, [ACCURACY], seed=0, optimizer="EDA")
    advisor.tell({"width": 3}, [0.5])
    assert advisor.optimizer.num_tell == 0
    widths = []
    for _ in range(5):
        arch = advisor.ask()
        advisor.tell(arch, [arch["width"] / 6])
        widths.append(arch["width"])
    assert sorted(widths) == [1, 2, 4, 5, 6]
