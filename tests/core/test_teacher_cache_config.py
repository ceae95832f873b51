"""``train.teacher_cache``: the settings of a backend's teacher-output cache."""

from __future__ import annotations

import pytest

import autokd
from autokd.config import TeacherCacheConfig

SEARCH = {"search": {"search_space": {"hidden_size": [8]}, "metrics": ["eval_loss"]}}


def test_the_cache_is_on_in_memory_by_default_and_every_setting_can_be_given():
    assert autokd.load_config({"auto_distillation": SEARCH}).train.teacher_cache == TeacherCacheConfig(
        enabled=True, dtype="float32", memory_budget_mb=2048.0, directory=None, prefill=False, disk_budget_mb=None
    )
    given = {
        "enabled": True,
        "dtype": "float16",
        "memory_budget_mb": 0,
        "directory": "/tmp/cache",
        "prefill": True,
        "disk_budget_mb": 512,
    }
    cache = autokd.load_config({"auto_distillation": SEARCH, "train": {"teacher_cache": given}}).train.teacher_cache
    assert cache == TeacherCacheConfig(
        enabled=True, dtype="float16", memory_budget_mb=0.0, directory="/tmp/cache", prefill=True, disk_budget_mb=512.0
    )


def test_bad_cache_settings_are_reported_together_with_their_fields():
    bad = {"dtype": "bfloat16", "memory_budget_mb": -1, "disk_budget_mb": -5}
    with pytest.raises(autokd.ConfigError) as err:
        autokd.load_config({"auto_distillation": SEARCH, "train": {"teacher_cache": bad}})
    assert err.value.problems == [
        "train.teacher_cache.dtype: 'float32' or 'float16', got 'bfloat16'",
        "train.teacher_cache.memory_budget_mb: must be >= 0",
        "train.teacher_cache.disk_budget_mb: must be >= 0 (or null for no limit)",
    ]
