import random

import pytest

from autokd import SearchSpace, SearchSpaceError


def test_mapping_behaviour_and_order():
    space = SearchSpace({"num_attention_heads": [2, 4], "hidden_size": [128, 256, 512]})
    assert space["hidden_size"] == [128, 256, 512]
    assert list(space) == ["num_attention_heads", "hidden_size"]
    assert space.size == 6
    assert len(space) == 2


def test_points_enumerate_every_point_in_fixed_order():
    space = SearchSpace({"a": [1, 2], "b": ["x", "y", "z"]})
    points = list(space.points())
    assert points[:3] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}]
    assert len(points) == 6 and len({space.key(p) for p in points}) == 6


def test_sample_uses_given_rng_only():
    space = SearchSpace({"a": list(range(10)), "b": list(range(10))})
    random.seed(0)
    first = [space.sample(random.Random(7)) for _ in range(3)]
    random.seed(12345)  # the global RNG must not matter
    second = [space.sample(random.Random(7)) for _ in range(3)]
    assert first == second


def test_encode_decode_roundtrip_and_key_is_canonical():
    space = SearchSpace({"hidden_size": [128, 256], "heads": [2, 4, 8]})
    point = {"heads": 8, "hidden_size": 256}
    assert space.encode(point) == (1, 2)
    assert space.decode((1, 2)) == {"hidden_size": 256, "heads": 8}
    assert space.key(point) == space.key({"hidden_size": 256, "heads": 8})
    hash(space.key(point))


@pytest.mark.parametrize(
    "choices, message",
    [
        ({}, "non-empty mapping"),
        ({"a": []}, "a: the list of choices is empty"),
        ({"a": 4}, "a: choices must be a list, got int 4 (write [4] for a single choice)"),
        ({"a": "abc"}, "a: choices must be a list, got str"),
        ({"a": [1, 1]}, "a: choices repeat a value"),
    ],
)
def test_bad_spaces(choices, message):
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace(choices)
    assert message in str(info.value)


def test_validate_names_what_is_wrong():
    space = SearchSpace({"a": [1, 2], "b": [3]})
    with pytest.raises(SearchSpaceError, match=r"missing \['b'\]"):
        space.validate({"a": 1})
    with pytest.raises(SearchSpaceError, match=r"not a choice: a=5 \(choices: \[1, 2\]\)"):
        space.validate({"a": 5, "b": 3})
