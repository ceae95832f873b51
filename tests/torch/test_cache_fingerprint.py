"""autokd-torch's cache fingerprint, computed by the core's hashing with torch's leaves
(issue #18): the digests are those the plugin computed on its own before, so a cache a
former run left on disk is still found (its directory is named by the digest)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from autokd_torch.cache import CacheFingerprint, dataset_fingerprint, teacher_fingerprint


def _tensor(h, t: torch.Tensor) -> None:
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())  # torch's dtype names: 'torch.float32'
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def test_the_teacher_is_hashed_by_class_names_torch_dtypes_shapes_and_bytes():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0]]))
        model.bias.fill_(0.25)
    h = hashlib.sha256(b"torch.nn.modules.linear.Linear")
    for name, value in (("weight", model.weight), ("bias", model.bias)):
        h.update(name.encode())
        _tensor(h, value.detach())
    assert teacher_fingerprint(model) == h.hexdigest()[:32]
    assert teacher_fingerprint(model.to(torch.bfloat16)) != h.hexdigest()[:32]  # bf16 hashes too


def test_the_data_is_hashed_by_length_then_each_example_tensors_as_torch_arrays_too():
    data = [{"input_ids": torch.tensor([3, 4]), "extra": np.array([1.5]), "label": 1}]
    h = hashlib.sha256(b"1")
    h.update(b"{")
    for key in ("'extra'", "'input_ids'", "'label'"):
        h.update(key.encode())
        if key == "'extra'":
            h.update(b"N")
            _tensor(h, torch.from_numpy(data[0]["extra"]))
        elif key == "'input_ids'":
            h.update(b"T")
            _tensor(h, data[0]["input_ids"])
        else:
            h.update(b"int:1")
    h.update(b"}")
    assert dataset_fingerprint(data) == h.hexdigest()[:32]


def test_the_cache_directory_is_named_by_the_same_digest_as_before():
    # the digest autokd-torch gave this fingerprint before the core's hashing served it
    assert CacheFingerprint("t", "d", "c", "float32").digest() == "295622f5ece3354a"
