"""The core's teacher-cache rules both backends apply (issue #18): which ``cache=``
arguments name a store, why a cache is off (logged once), the collator and dataset
fingerprints, and the feature-matcher init of :mod:`autokd.init_basis`."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging

import pytest

from autokd import AutoKDError
from autokd.cache_switch import DISABLED, NOT_CONFIGURED, WEIGHTS_CHANGED, CacheSwitch, run_record
from autokd.config import TeacherCacheConfig
from autokd.teacher_cache import TeacherOutputStore, collator_fingerprint, dataset_fingerprint


class BackendStore(TeacherOutputStore):
    """A backend's store (as autokd-torch's TeacherOutputCache is)."""


def test_a_cache_argument_names_no_store_the_defaults_a_store_or_a_config():
    assert BackendStore.coerce(None) is None and BackendStore.coerce(False) is None
    default = BackendStore.coerce(True)
    assert type(default) is BackendStore and default.memory_budget == 2048 * 2**20 and default.dtype == "float32"
    given = BackendStore()
    assert BackendStore.coerce(given) is given
    from_dict = BackendStore.coerce({"dtype": "float16", "memory_budget_mb": 1, "prefill": True})
    assert type(from_dict) is BackendStore and (from_dict.dtype, from_dict.memory_budget, from_dict.prefill) == (
        "float16",
        2**20,
        True,
    )
    assert BackendStore.coerce(TeacherCacheConfig(enabled=False)).enabled is False
    with pytest.raises(AutoKDError) as error:
        BackendStore.coerce(TeacherOutputStore())  # a store of another backend keeps other rows
    assert str(error.value) == (
        "cache: expected a BackendStore, a train.teacher_cache config, True or None, got TeacherOutputStore"
    )


def test_the_switch_says_why_the_cache_is_off_and_logs_each_reason_once(caplog):
    switch = CacheSwitch(logging.getLogger("autokd.test"))
    store = TeacherOutputStore()
    assert switch.reason(None, None) == NOT_CONFIGURED
    assert switch.reason(TeacherOutputStore(enabled=False), None) == DISABLED
    assert switch.reason(store, "not prepared") == "not prepared"
    assert switch.reason(store, None) is None
    with caplog.at_level(logging.INFO, logger="autokd.test"):
        switch.turn_off("left padding", for_good=False, warn=False)
        switch.turn_off("left padding", for_good=False, warn=False)
        assert switch.reason(store, None) == "left padding"
        switch.new_run()
        assert switch.reason(store, None) is None
        switch.turn_off(WEIGHTS_CHANGED, for_good=True, warn=True)
        switch.new_run()
        assert switch.reason(store, None) == WEIGHTS_CHANGED
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "teacher cache off: left padding"),
        ("WARNING", f"teacher cache off: {WEIGHTS_CHANGED}"),
    ]


@dataclasses.dataclass
class PadCollator:
    max_length: int = 16
    pad_to_multiple_of: int | None = None
    tokenizer: object = dataclasses.field(default_factory=object)  # not a simple setting: left out


def test_a_collator_is_named_with_its_simple_settings():
    assert collator_fingerprint(None) == "default"
    assert collator_fingerprint(PadCollator()) == (
        f'{__name__}.PadCollator{{"max_length": 16, "pad_to_multiple_of": null}}'
    )
    assert collator_fingerprint(functools.partial(sorted, reverse=True)) == 'builtins.sorted{"reverse": "True"}'


def test_a_dataset_is_known_by_its_declared_fingerprint_or_its_examples():
    class Declared(list):
        cache_fingerprint = "v1"

    assert dataset_fingerprint(Declared([1, 2])) == "declared:v1"
    expected = hashlib.sha256(b"2")
    for example in ({"label": 1}, {"label": 2}):
        expected.update(b"{" + b"'label'" + f"int:{example['label']!r}".encode() + b"}")
    assert dataset_fingerprint([{"label": 1}, {"label": 2}]) == expected.hexdigest()[:32]
    assert dataset_fingerprint([{"label": 1}, {"label": 3}]) != dataset_fingerprint([{"label": 1}, {"label": 2}])


def test_a_feature_matcher_starts_as_the_basis_and_zero_bias():
    np = pytest.importorskip("numpy")
    from autokd.init_basis import matcher_init

    projection = np.arange(6.0).reshape(3, 2)
    weight, bias = matcher_init(projection, student_dim=2, teacher_dim=3)
    assert np.array_equal(weight, projection) and weight is not projection
    assert np.array_equal(bias, np.zeros(3))
    assert matcher_init(projection, student_dim=3, teacher_dim=2) is None
    assert matcher_init(None, student_dim=2, teacher_dim=3) is None


def test_a_trial_record_says_whether_the_cache_served_and_what_it_holds(tmp_path):
    assert run_record(None, NOT_CONFIGURED, hits=0, misses=7, prefilled=0) == {
        "enabled": False,
        "hits": 0,
        "misses": 7,
        "reason": NOT_CONFIGURED,
    }
    store = TeacherOutputStore(directory=tmp_path)
    assert run_record(store, None, hits=5, misses=2, prefilled=4) == {
        "enabled": True,
        "hits": 5,
        "misses": 2,
        "dtype": "float32",
        "bytes_in_memory": 0,
        "bytes_on_disk": 0,
        "directory": None,
        "prefilled": 4,
    }
