"""Saving and loading trained students, never as pickles.

- a Hugging Face ``PreTrainedModel``: ``save_pretrained`` (safetensors) plus the
  teacher's tokenizer when it is known; ``from_pretrained`` loads it offline;
- a sentence encoder (one transformers encoder, mean pooling over the attention mask,
  an optional ``nn.Linear`` projection: the MiniLM example's ``SentenceEncoder``): the
  sentence-transformers layout (with ``Normalize`` last, as all-MiniLM-L6-v2), which ``SentenceTransformer(dir)`` and ``AutoModel``
  load; whether a module is one is checked on the example batch, not guessed from names;
- any other ``nn.Module``: ``model.safetensors`` of its state dict and ``arch.json``;
  :func:`load_student` rebuilds it with the search's model builder.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from autokd import AutoKDError

__all__ = ["load_student", "save_sentence_encoder", "save_student", "sentence_encoder_parts", "teacher_tokenizer"]

log = logging.getLogger("autokd.torch")

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"


def save_student(model: Any, directory: str, *, record=None, context=None) -> dict:
    """Save ``model`` in ``directory``; returns ``format``, ``files`` and ``load``."""
    import transformers
    from torch import nn

    if not isinstance(model, nn.Module):
        raise AutoKDError(
            f"output.save: the pytorch backend saves torch.nn.Module students, got {type(model).__name__}"
        )
    arch = dict(record.arch) if record is not None else {}
    example_inputs = getattr(context, "example_inputs", None)
    tokenizer = teacher_tokenizer(
        getattr(context, "teacher", None), getattr(getattr(context, "config", None), "model", None)
    )
    if isinstance(model, transformers.PreTrainedModel):
        model.save_pretrained(directory, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        cls = type(model).__name__
        info = {
            "format": "transformers",
            "load": f"from transformers import {cls}\nmodel = {cls}.from_pretrained({directory!r})",
        }
    elif (parts := sentence_encoder_parts(model, example_inputs)) is not None:
        save_sentence_encoder(directory, *parts, tokenizer)
        info = {
            "format": "sentence-transformers",
            "load": f"from sentence_transformers import SentenceTransformer\nmodel = SentenceTransformer({directory!r})",
        }
    else:
        from safetensors.torch import save_model

        save_model(model, os.path.join(directory, WEIGHTS_FILE))  # tied tensors once
        _write_json(
            os.path.join(directory, ARCH_FILE),
            {"arch": arch, "class": f"{type(model).__module__}.{type(model).__qualname__}", "format": "autokd-torch"},
        )
        info = {
            "format": "safetensors state dict + arch.json",
            "load": f"import autokd_torch\nmodel = autokd_torch.load_student({directory!r}, model_builder)",
        }
    info["files"] = sorted(
        os.path.relpath(os.path.join(root, name), directory) for root, _, names in os.walk(directory) for name in names
    )
    return info


def load_student(directory: str, model_builder: Callable[[dict], Any] | None = None) -> Any:
    """A saved student: ``model_builder(arch)`` with the saved weights for a plain
    ``nn.Module``; ``from_pretrained`` for a Hugging Face model (``model_builder`` may be
    left out)."""
    from safetensors.torch import load_model

    arch_path = os.path.join(directory, ARCH_FILE)
    if os.path.exists(arch_path):
        if model_builder is None:
            raise AutoKDError(f"{directory}: a plain nn.Module student: pass the model_builder that built it")
        with open(arch_path, encoding="utf-8") as fh:
            arch = json.load(fh)["arch"]
        model = model_builder(dict(arch))
        load_model(model, os.path.join(directory, WEIGHTS_FILE))
        return model.eval()
    if os.path.exists(os.path.join(directory, "config.json")):
        import transformers

        with open(os.path.join(directory, "config.json"), encoding="utf-8") as fh:
            architectures = json.load(fh).get("architectures") or []
        cls = getattr(transformers, architectures[0], None) if architectures else None
        return (cls or transformers.AutoModel).from_pretrained(directory).eval()
    raise AutoKDError(f"{directory}: no {ARCH_FILE} or config.json: not a student saved by autokd-torch")


# --- sentence encoders --------------------------------------------------------------------


def sentence_encoder_parts(model: Any, example_inputs: Any) -> tuple[Any, Any] | None:
    """(encoder, projection or None) when ``model`` is a transformers encoder, mean
    pooling and an optional linear projection, checked on ``example_inputs``; else None."""
    import torch
    import transformers
    from torch import nn

    if not isinstance(example_inputs, Mapping) or "input_ids" not in example_inputs:
        return None
    children = dict(model.named_children())
    encoders = [m for m in children.values() if isinstance(m, transformers.PreTrainedModel)]
    others = [m for m in children.values() if not isinstance(m, transformers.PreTrainedModel)]
    if len(encoders) != 1 or not all(isinstance(m, nn.Linear | nn.Identity) for m in others) or len(others) > 1:
        return None
    encoder = encoders[0]
    projection = others[0] if others and isinstance(others[0], nn.Linear) else None
    inputs = {k: v for k, v in example_inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(inputs["input_ids"])
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model(**inputs)
            if not isinstance(output, torch.Tensor) or output.dim() != 2:
                return None
            hidden = encoder(**inputs)[0]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            if projection is not None:
                pooled = projection(pooled)
            same = pooled.shape == output.shape and torch.allclose(pooled, output, atol=1e-5, rtol=1e-4)
    except Exception:  # not callable like an encoder: a plain module
        return None
    finally:
        model.train(was_training)
    return (encoder, projection) if same else None


def save_sentence_encoder(
    directory: str, encoder: Any, projection: Any = None, tokenizer: Any = None, max_seq_length: int | None = None
) -> None:
    """Save a sentence encoder (a transformers ``encoder``, mean pooling, an optional
    ``nn.Linear`` ``projection``, unit length) in the sentence-transformers layout: the
    encoder (and tokenizer) at the top, mean pooling in ``1_Pooling``, the projection in
    ``2_Dense``, then ``Normalize``; ``SentenceTransformer(directory)`` and
    ``transformers.AutoModel.from_pretrained(directory)`` load it offline.
    ``max_seq_length`` defaults to the tokenizer's limit or the encoder's positions."""
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    encoder.save_pretrained(directory, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    hidden = encoder.config.hidden_size
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    _write_json(
        os.path.join(directory, "1_Pooling", "config.json"),
        {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    if projection is not None:
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        _write_json(
            os.path.join(directory, "2_Dense", "config.json"),
            {
                "in_features": projection.in_features,
                "out_features": projection.out_features,
                "bias": projection.bias is not None,
                "activation_function": "torch.nn.modules.linear.Identity",
            },
        )
        weights = {"linear.weight": projection.weight.detach().contiguous()}
        if projection.bias is not None:
            weights["linear.bias"] = projection.bias.detach().contiguous()
        save_file(weights, os.path.join(directory, "2_Dense", "model.safetensors"))
    # then unit length, as all-MiniLM-L6-v2 and most sentence encoders: a cosine between
    # two embeddings is unchanged, and SentenceTransformer.encode gives what users expect
    normalize = f"{len(modules)}_Normalize"
    modules.append(
        {
            "idx": len(modules),
            "name": str(len(modules)),
            "path": normalize,
            "type": "sentence_transformers.models.Normalize",
        }
    )
    os.makedirs(os.path.join(directory, normalize), exist_ok=True)
    _write_json(os.path.join(directory, "modules.json"), modules)
    max_length = max_seq_length if max_seq_length is not None else getattr(tokenizer, "model_max_length", None)
    if not isinstance(max_length, int) or max_length > 1_000_000:
        max_length = encoder.config.max_position_embeddings
    _write_json(
        os.path.join(directory, "sentence_bert_config.json"), {"max_seq_length": max_length, "do_lower_case": False}
    )


# --- the teacher's tokenizer ------------------------------------------------------------------


def teacher_tokenizer(teacher: Any, model_config: Any = None) -> Any:
    """The teacher's tokenizer when it can be found locally: ``model.teacher`` as a model
    directory, or the directory a transformers teacher (or a module holding one) was
    loaded from. None otherwise."""
    candidates = []
    spec = getattr(model_config, "teacher", None)
    if isinstance(spec, str) and os.path.isdir(spec):
        candidates.append(spec)
    if teacher is not None:
        modules = [teacher, *(getattr(teacher, "modules", list)())]
        for module in modules:
            path = getattr(getattr(module, "config", None), "name_or_path", None) or getattr(
                module, "name_or_path", None
            )
            if isinstance(path, str) and os.path.isdir(path):
                candidates.append(path)
                break
    for path in candidates:
        if not any(
            os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
        ):
            continue
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            log.warning("output: the teacher's tokenizer in %s could not be loaded: %s", path, exc)
    return None


def _write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
