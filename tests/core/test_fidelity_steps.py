import pytest

from autokd.fidelity import schedule_steps, stage_fractions, stage_steps


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


def test_a_final_phase_may_train_past_the_full_budget():
    assert stage_steps(200, 1.0, 3.0) == 600
    assert stage_steps(200, 0.0, 4.0) == 800


def test_a_schedule_spans_the_configured_steps_or_all_a_final_phase_trains():
    # rungs of a search: the configured steps, whatever the increment
    assert [schedule_steps(200, done, b) for done, b in ((0.0, 1 / 9), (1 / 9, 2 / 9), (1 / 3, 2 / 3))] == [200] * 3
    # a final distillation: every step up to its end (x4 here), with a rebuilt model (x1.5) or a continued one
    assert schedule_steps(200, 1.0, 3.0) == 800
    assert schedule_steps(200, 0.0, 1.5) == 300
    assert schedule_steps(20, 1.0, 1 / 3) == 27


def test_negative_fractions_are_refused():
    with pytest.raises(ValueError, match="must be >= 0"):
        stage_steps(10, 0.5, -0.1)


def test_stage_fractions():
    assert stage_fractions(0.25, 3) == [0.25, 0.25, 0.25]
    assert stage_fractions([1, 2.5], 2) == [1.0, 2.5]
    with pytest.raises(ValueError, match="3 fractions for 2 stages"):
        stage_fractions([1, 1, 1], 2)
