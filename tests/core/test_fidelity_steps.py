import pytest

from autokd.fidelity import stage_steps


def test_increments_add_up_to_the_configured_steps():
    fractions = [1 / 9, 2 / 9, 6 / 9]
    for steps in (1, 7, 20, 200, 1000):
        done, total = 0.0, 0
        for budget in fractions:
            total += stage_steps(steps, done, budget)
            done += budget
        assert total == steps


def test_one_increment():
    assert stage_steps(200, 0.0, 1 / 9) == 22
    assert stage_steps(200, 1 / 9, 2 / 9) == 67 - 22


def test_over_the_budget_is_refused():
    with pytest.raises(ValueError, match="exceeds the full budget"):
        stage_steps(10, 0.5, 0.6)
