"""The evaluators on PyTorch models: FLOPs against counts worked out by hand, parameters
against tensor sizes, model size against a saved file, latency against a 4x larger model."""

from __future__ import annotations

import math
import os

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from latency_models import bert_config, bert_forward_flops  # noqa: E402

import autokd  # noqa: E402
import autokd_latency  # noqa: E402
from autokd import EvalContext  # noqa: E402


def mlp(width: int, in_features: int = 64, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes)
    )


def tiny_bert(**overrides):
    from transformers import BertModel

    return BertModel(bert_config(**overrides)).eval()


# --- FLOPs ------------------------------------------------------------------------------


def test_flops_of_a_linear_layer():
    # [5, 8] x [8, 4]: 5*4 outputs, each 8 multiply-adds = 2*5*8*4 FLOPs (bias adds are not counted)
    context = EvalContext(example_inputs=torch.randn(5, 8))
    assert autokd_latency.flops(nn.Linear(8, 4), context) == 2 * 5 * 8 * 4
    assert context.extras["flops"]["by_op"] == {"aten.addmm": 320}
    assert context.extras["flops"]["input_shapes"] == {"0": [5, 8]}


def test_flops_of_an_mlp_scale_with_the_asked_batch_size():
    model = mlp(32)
    per_row = 2 * (64 * 32 + 32 * 32 + 32 * 10)
    assert autokd_latency.flops(model, EvalContext(example_inputs=torch.randn(3, 64))) == 3 * per_row
    # the example batch of 3 is repeated to 7 rows, or cut to 1
    assert (
        autokd_latency.flops(model, EvalContext(example_inputs=torch.randn(3, 64), options={"batch_size": 7}))
        == 7 * per_row
    )
    assert (
        autokd_latency.flops(model, EvalContext(example_inputs=torch.randn(3, 64), options={"batch_size": 1}))
        == per_row
    )


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_flops_of_a_tiny_bert_match_the_hand_count(attention):
    model = tiny_bert(attn_implementation=attention)
    context = EvalContext(options={"batch_size": 2, "seq_len": 16})
    expected = bert_forward_flops(batch=2, seq=16, hidden=32, intermediate=37, layers=2)
    assert autokd_latency.flops(model, context) == expected == 962_560
    # sdpa on CPU runs a fused kernel torch's counter misses (pytorch#195460): counted here
    attention_op = "aten.bmm" if attention == "eager" else "aten._scaled_dot_product_flash_attention_for_cpu"
    # per layer QK^T and (QK^T)V: 2 products of 2 * B * S * S * H FLOPs; 2 layers
    assert context.extras["flops"]["by_op"][attention_op] == 2 * 2 * (2 * 2 * 16 * 16 * 32)
    assert context.extras["flops"]["input_shapes"] == {"input_ids": [2, 16], "attention_mask": [2, 16]}


def test_flops_equal_torchs_own_counter_on_the_example_batch():
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_bert(attn_implementation="eager")
    batch = {"input_ids": torch.randint(0, 99, (3, 10)), "token_type_ids": torch.zeros(3, 10, dtype=torch.long)}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(**batch)
    assert autokd_latency.flops(model, EvalContext(example_inputs=batch)) == counter.get_total_flops()
    assert counter.get_total_flops() == bert_forward_flops(batch=3, seq=10, hidden=32, intermediate=37, layers=2)


def test_seq_len_cuts_or_repeats_the_example_sequences():
    model = tiny_bert(attn_implementation="eager")
    batch = {"input_ids": torch.randint(0, 99, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    for seq in (4, 20):
        context = EvalContext(example_inputs=batch, options={"seq_len": seq, "batch_size": 3})
        assert autokd_latency.flops(model, context) == bert_forward_flops(
            batch=3, seq=seq, hidden=32, intermediate=37, layers=2
        )
        assert context.extras["flops"]["input_shapes"] == {"input_ids": [3, seq], "attention_mask": [3, seq]}


def test_numpy_examples_become_tensors():
    np = pytest.importorskip("numpy")
    assert (
        autokd_latency.flops(nn.Linear(8, 4), EvalContext(example_inputs=np.ones((2, 8), np.float32))) == 2 * 2 * 8 * 4
    )


def test_built_inputs_are_seeded_token_ids_within_the_vocabulary():
    from autokd_latency import _torch
    from autokd_latency._inputs import resolve_inputs

    model = tiny_bert()
    make = lambda: resolve_inputs(  # noqa: E731
        model, None, batch_size=2, seq_len=5, ops=_torch.OPS, forward=model.forward, evaluator="latency"
    )
    first, second = make(), make()
    assert torch.equal(first.kwargs["input_ids"], second.kwargs["input_ids"])
    assert first.kwargs["input_ids"].shape == (2, 5) and int(first.kwargs["input_ids"].max()) < 99
    assert torch.equal(first.kwargs["attention_mask"], torch.ones(2, 5, dtype=torch.long))


def test_inputs_follow_the_model_to_its_device():
    # meta tensors compute shapes only: enough to see that the CPU batch was moved
    context = EvalContext(example_inputs={"input": torch.randn(5, 8)})
    assert autokd_latency.flops(nn.Linear(8, 4, device="meta"), context) == 2 * 5 * 8 * 4


def test_flops_leave_the_models_training_mode_alone():
    model = mlp(8).train()
    autokd_latency.flops(model, EvalContext(example_inputs=torch.randn(2, 64)))
    assert model.training


# --- parameters -------------------------------------------------------------------------


def test_params_are_the_sum_of_tensor_sizes():
    model = tiny_bert()
    context = EvalContext()
    total = sum(t.numel() for t in model.parameters())
    assert autokd_latency.params(model, context) == total
    assert context.extras["params"] == {"trainable": total, "total": total, "framework": "pytorch"}


def test_frozen_parameters_are_total_but_not_trainable():
    model = mlp(16)
    for p in model[0].parameters():
        p.requires_grad_(False)
    frozen = 64 * 16 + 16
    total = frozen + (16 * 16 + 16) + (16 * 10 + 10)
    context = EvalContext(options={"trainable_only": True})
    assert autokd_latency.params(model, context) == total - frozen
    assert context.extras["params"] == {"trainable": total - frozen, "total": total, "framework": "pytorch"}


def test_tied_weights_count_once():
    from transformers import BertForMaskedLM

    model = BertForMaskedLM(bert_config())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    unique = {id(p): p.numel() for _, module in model.named_modules() for p in module.parameters(recurse=False)}
    assert autokd_latency.params(model, EvalContext()) == sum(unique.values())
    assert autokd_latency.count_params(model).total < sum(
        t.numel() for t in model.state_dict().values()
    )  # the state dict lists the tied tensors twice


def test_lazy_modules_must_be_materialized_first():
    with pytest.raises(autokd.AutoKDError, match=r"uninitialized \(lazy\) parameters .*call the model once"):
        autokd_latency.params(nn.LazyLinear(4), EvalContext())


# --- model size -------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: mlp(256), lambda: __import__("transformers").BertForMaskedLM(bert_config())])
def test_model_size_is_the_saved_file_less_its_header(make, tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = make()
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_model(model, str(path))  # writes a tied tensor once, as we count it
    context = EvalContext()
    megabytes = autokd_latency.model_size(model, context)
    size = context.extras["model_size"]["bytes"]
    assert megabytes == size / 1e6
    # a safetensors file is an 8-byte header length, the JSON header, then the tensors' bytes
    raw = path.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    assert size == len(raw) - 8 - header
    assert os.path.getsize(path) - size < 0.06 * size


def test_model_size_counts_persistent_buffers_in_their_dtype():
    model = nn.BatchNorm1d(10)  # weight, bias, running_mean, running_var (float32), num_batches_tracked (int64)
    size = autokd_latency.weights_size(model)
    assert (size.bytes, size.tensors) == (4 * 10 * 4 + 8, 5)
    assert autokd_latency.weights_size(model.half()).bytes == 4 * 10 * 2 + 8


# --- latency ----------------------------------------------------------------------------


def test_latency_is_a_positive_finite_low_quantile_with_its_spread_recorded():
    context = EvalContext(example_inputs=torch.randn(4, 64), options={"repeats": 7, "warmup": 2})
    value = autokd_latency.latency(mlp(32), context)
    record = context.extras["latency"]
    assert math.isfinite(value) and value > 0
    assert value == record["latency_ms"]
    assert record["min_ms"] <= value <= record["median_ms"]
    assert record["min_ms"] <= record["q1_ms"] <= record["median_ms"] <= record["q3_ms"] <= record["max_ms"]
    assert record["samples"] == 7 * record["rounds"] and record["rounds"] >= 1
    assert record["elapsed_s"] > 0 and (record["spread"] is None or record["spread"] >= 0)
    assert record["blocks"] >= 0
    assert record["iqr_ms"] == pytest.approx(record["q3_ms"] - record["q1_ms"])
    assert record["cv"] >= 0
    assert (record["repeats"], record["warmup"], record["threads"], record["batch_size"]) == (7, 2, 1, 4)
    assert record["calls_per_repeat"] >= 1
    assert record["cpu_ms"] > 0
    assert record["input_shapes"] == {"0": [4, 64]} and record["framework"] == "pytorch"


def test_latency_of_a_bert_from_its_config():
    context = EvalContext(options={"batch_size": 1, "seq_len": 32, "repeats": 5})
    value = autokd_latency.latency(tiny_bert(), context)
    assert value > 0
    assert context.extras["latency"]["input_shapes"] == {"input_ids": [1, 32], "attention_mask": [1, 32]}


def test_latency_pins_threads_and_restores_the_model_and_torch_state():
    model = mlp(16).train()
    before = torch.get_num_threads()
    seen = []
    model.register_forward_hook(
        lambda module, args, out: seen.append(
            (torch.get_num_threads(), module.training, torch.is_inference_mode_enabled())
        )
    )
    autokd_latency.latency(model, EvalContext(example_inputs=torch.randn(2, 64), options={"repeats": 2, "threads": 2}))
    assert set(seen) == {(2, False, True)}
    assert torch.get_num_threads() == before
    assert model.training


def test_a_4x_larger_model_is_slower():
    # A 2048 wide hidden layer instead of 512: 4x the FLOPs. The machine may be busy,
    # so measure both in turn three times and ask for most rounds and the overall ratio.
    x = torch.randn(64, 512)
    small = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    large = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 512))
    assert autokd_latency.count_flops(large, x).total == 4 * autokd_latency.count_flops(small, x).total
    options = {"repeats": 15, "warmup": 3}
    ratios = []
    for _ in range(3):
        small_ms = autokd_latency.latency(small, EvalContext(example_inputs=x, options=options))
        large_ms = autokd_latency.latency(large, EvalContext(example_inputs=x, options=options))
        ratios.append(large_ms / small_ms)
    assert sum(r > 1 for r in ratios) >= 2, ratios
    assert sorted(ratios)[1] > 1.5, ratios


# --- errors -----------------------------------------------------------------------------


def test_a_model_without_inputs_asks_for_example_inputs():
    with pytest.raises(autokd.ConfigError) as info:
        autokd_latency.latency(mlp(8), EvalContext())
    assert str(info.value) == (
        "invalid configuration: evaluation.latency: no inputs to measure Sequential on: set "
        "AutoDistillation.example_inputs (a batch the model can be called with), or use a model whose `config` has "
        "a vocab_size so token ids can be built from latency's batch_size and seq_len"
    )


def test_seq_len_beyond_the_position_table_is_refused():
    with pytest.raises(
        autokd.ConfigError,
        match=r"evaluation\.flops\.seq_len: 65 is longer than the model's "
        r"max_position_embeddings \(64\); use at most 64",
    ):
        autokd_latency.flops(tiny_bert(), EvalContext(options={"seq_len": 65}))


def test_a_failing_call_names_the_model_and_the_input_shapes():
    with pytest.raises(autokd.AutoKDError) as info:
        autokd_latency.latency(nn.Linear(8, 4), EvalContext(example_inputs=torch.randn(3, 7)))
    assert str(info.value).startswith(
        "latency: calling Linear on inputs {'0': [3, 7]} failed: "
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied"
    )
    assert str(info.value).endswith(
        "Check AutoDistillation.example_inputs (or evaluation.latency.batch_size / seq_len)"
    )


def test_seq_len_needs_a_sequence_dimension():
    with pytest.raises(
        autokd.ConfigError,
        match=r"evaluation\.flops\.seq_len: the example inputs hold no tensor with a "
        r"sequence dimension",
    ):
        autokd_latency.flops(nn.Linear(8, 4), EvalContext(example_inputs=torch.randn(8), options={"seq_len": 4}))
