"""The distillation rules of :mod:`autokd.distill`, run by the torch AND the tensorflow env
(issue #18): the same inputs and the same expected values for every backend installed --
process selection, logits finding, weight / loss-type / temperature / optimizer checks, and
every built-in loss on padded and unpadded batches (issue #20: means over real positions)."""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import autokd  # noqa: E402
from autokd import ConfigError  # noqa: E402
from autokd.distill import OPTIMIZERS  # noqa: E402


class TorchRules:
    framework = "pytorch"

    def __init__(self):
        import torch

        from autokd_torch import criteria, data, features, optim
        from autokd_torch.cache import LOGITS
        from autokd_torch.teacher import TeacherOutputs

        self.torch, self.criteria, self.data, self.features, self.optim = torch, criteria, data, features, optim
        self.LOGITS, self.TeacherOutputs = LOGITS, TeacherOutputs

    def tensor(self, x):
        return self.torch.from_numpy(np.asarray(x, dtype="float32"))

    def select(self, output, process):
        return self.features.apply_process(output, process, "output process")

    def logits(self, outputs):
        return self.data.logits_of(outputs)

    def kd(self, *args):
        return self.criteria.KnowledgeDistillationLoss(*args)

    def il(self, *args):
        return self.criteria.IntermediateLayersKnowledgeDistillationLoss(*args)

    def optimizer(self, spec):
        return self.optim.build_optimizer([self.torch.nn.Parameter(self.torch.zeros(2))], spec)

    def _mask(self, mask):
        return None if mask is None else self.torch.from_numpy(mask)

    def il_loss(self, students, teachers, mask, dims, loss_types, weights):
        mappings = [(f"s{i}", "", f"t{i}", "") for i in range(len(students))]
        criterion = self.il(mappings, loss_types, weights)
        specs = [(m[2], m[3]) for m in mappings]
        criterion.set_teacher_outputs(
            self.TeacherOutputs(
                None,
                {s: self.tensor(t) for s, t in zip(specs, teachers)},
                self._mask(mask),
                {s: d for s, d in zip(specs, dims)} if mask is not None else {},
            )
        )
        criterion.student_features = {(m[0], m[1]): self.tensor(s) for m, s in zip(mappings, students)}
        return float(criterion.loss_cal())

    def kd_loss(self, student, teacher, mask, dims, temperature, kind):
        criterion = self.kd(temperature, ["CE", kind], [0.0, 1.0])
        padding = {self.LOGITS: dims} if mask is not None else {}
        criterion.set_teacher_outputs(self.TeacherOutputs(self.tensor(teacher), {}, self._mask(mask), padding))
        return float(criterion.compute_loss(self.tensor(student), None))


class TensorFlowRules:
    framework = "tensorflow"

    def __init__(self):
        import tensorflow as tf

        from autokd_tensorflow import criteria, distillation, features

        self.tf, self.criteria, self.features, self.distillation = tf, criteria, features, distillation

    def tensor(self, x):
        return self.tf.constant(np.asarray(x, dtype="float32"))

    def select(self, output, process):
        return self.features.select(output, process)

    def logits(self, outputs):
        return self.features.logits_of(outputs)

    def kd(self, *args):
        return self.criteria.KnowledgeDistillationLoss(*args)

    def il(self, *args):
        return self.criteria.IntermediateLayersKnowledgeDistillationLoss(*args)

    def optimizer(self, spec):
        return self.distillation.make_optimizer(spec)

    def _real(self, criterion, features, mask, dims):
        if mask is None:
            return [self.tensor(f) for f in features]
        criterion.token_dims = list(dims)
        return criterion.real_positions({"attention_mask": mask}, [self.tensor(f) for f in features])

    def il_loss(self, students, teachers, mask, dims, loss_types, weights):
        mappings = [(f"s{i}", "", f"t{i}", "") for i in range(len(students))]
        criterion = self.il(mappings, loss_types, weights)
        s = self._real(criterion, students, mask, dims)
        t = self._real(criterion, teachers, mask, dims)
        return float(criterion.loss_cal(s, t))

    def kd_loss(self, student, teacher, mask, dims, temperature, kind):
        criterion = self.kd(temperature, ["CE", kind], [0.0, 1.0])
        s = self._real(criterion, [student], mask, [dims])
        t = self._real(criterion, [teacher], mask, [dims])
        return float(criterion.compute(None, s, None, t, None))


BACKENDS = {"pytorch": ("autokd_torch", TorchRules), "tensorflow": ("autokd_tensorflow", TensorFlowRules)}


@pytest.fixture(scope="module", params=list(BACKENDS))
def rules(request):
    module, cls = BACKENDS[request.param]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed in this env")
    return cls()


def values(x):
    return np.asarray(x if not hasattr(x, "numpy") else x.numpy())


# --- process selection -----------------------------------------------------------------


def test_a_process_selects_from_tuples_lists_and_mappings(rules):
    a, b = rules.tensor([[1.0]]), rules.tensor([[2.0]])
    assert values(rules.select((a, b), "1")) == 2.0
    assert values(rules.select([a, b], 0)) == 1.0
    assert values(rules.select((a, b), "-1")) == 2.0
    assert values(rules.select((a,), "")) == 1.0  # a one-item tuple is its item
    assert values(rules.select({"hidden": a, "logits": b}, "logits")) == 2.0
    assert values(rules.select((a, b), lambda out: out[1])) == 2.0


def test_an_index_into_a_dict_is_an_error_naming_its_keys(rules):
    a = rules.tensor([[1.0]])
    with pytest.raises(
        ConfigError,
        match=r"process '0' indexes a dict with keys \['hidden', 'logits'\]; "
        r"a mapping is selected by key: use one of \['hidden', 'logits'\]",
    ):
        rules.select({"hidden": a, "logits": a}, "0")
    with pytest.raises(ConfigError, match=r"process '2' is out of range: the output is a tuple of 2 items"):
        rules.select((a, a), "2")
    with pytest.raises(ConfigError, match=r"key 'attn' not in the output; it has keys \['hidden'\]"):
        rules.select({"hidden": a}, "attn")
    with pytest.raises(ConfigError, match=r"process '1' gives None\. Attention maps"):
        rules.select((a, None), "1")


def test_a_model_output_is_indexed_by_its_fields_that_are_set(rules):
    a, b = rules.tensor([[1.0]]), rules.tensor([[2.0]])
    if rules.framework == "pytorch":
        out = pytest.importorskip("transformers.modeling_outputs").BaseModelOutput
    else:
        out = pytest.importorskip("transformers.modeling_tf_outputs").TFBaseModelOutput
    out = out(last_hidden_state=a, hidden_states=None, attentions=b)
    assert values(rules.select(out, "1")) == 2.0  # hidden_states is None: not counted
    assert values(rules.select(out, "last_hidden_state")) == 1.0


# --- logits ------------------------------------------------------------------------------


def test_logits_are_found_by_one_rule(rules):
    a, b = rules.tensor([[1.0]]), rules.tensor([[2.0]])
    assert values(rules.logits(a)) == 1.0
    assert values(rules.logits((b, a))) == 2.0
    assert values(rules.logits({"loss": a, "logits": b})) == 2.0
    assert values(rules.logits({"prediction_logits": b, "loss": a})) == 2.0
    with pytest.raises(ConfigError, match=r"the model's outputs have no logits: keys \['loss', 'hidden'\]"):
        rules.logits({"loss": a, "hidden": b})  # no guess at another entry


# --- loss types, weights, temperatures, optimizers -----------------------------------------


@pytest.mark.parametrize(
    "weights, message",
    [
        ([-1, 2], r"KnowledgeDistillationLoss.loss_weights: weights are non-negative numbers, got \[-1, 2\]"),
        ([0.3, 0.3], r"loss_weights: \[0.3, 0.3\] sum to 0.6; the weights of \[student-vs-targets"),
        ([1.0], r"loss_weights: 1 weights for 2 loss types"),
    ],
)
def test_output_distillation_weights(rules, weights, message):
    name = "KnowledgeDistillationLoss." if rules.framework == "pytorch" else ""
    with pytest.raises(ConfigError, match=message.replace("KnowledgeDistillationLoss.", name)):
        rules.kd(1.0, ["CE", "KL"], weights)


def test_intermediate_weights_are_non_negative_and_need_not_sum_to_one(rules):
    with pytest.raises(ConfigError, match=r"loss_weights: weights are non-negative numbers, got \[-1, 2\]"):
        rules.il([("a", "b"), ("c", "d")], ["MSE", "MSE"], [-1, 2])
    assert rules.il([("a", "b"), ("c", "d")], ["MSE", "MSE"], [1, 2]).loss_weights == [1.0, 2.0]
    assert rules.il([("a", "b"), ("c", "d")]).loss_weights == [0.5, 0.5]


def test_loss_types_and_temperature(rules):
    with pytest.raises(ConfigError, match=r"loss_types\[0\]: the student-vs-targets loss is 'CE' .* got 'KL'"):
        rules.kd(1.0, ["KL", "KL"], [0.5, 0.5])
    with pytest.raises(ConfigError, match=r"loss_types: output distillation takes 2 loss types"):
        rules.kd(1.0, ["CE"], [1.0])
    with pytest.raises(ConfigError, match=r"temperature: must be a positive number, got 0"):
        rules.kd(0, ["CE", "KL"], [0.5, 0.5])
    with pytest.raises(ConfigError, match=r"loss_types: 1 loss types for 2 layer mappings"):
        rules.il([("a", "b"), ("c", "d")], ["MSE"])


def test_the_config_checks_weights_at_load_with_the_path(rules):
    doc = {
        "model": {"framework": rules.framework},
        "auto_distillation": {
            "search": {"search_space": {"hidden_size": [16]}, "metrics": ["accuracy"]},
            "flash_distillation": {"loss_types": ["CE", "KL"], "loss_weights": [-1, 2]},
        },
    }
    with pytest.raises(
        ConfigError, match=r"auto_distillation.flash_distillation.loss_weights: weights are non-negative"
    ):
        autokd.load_config(doc)


def test_optimizer_names_come_from_one_table(rules):
    supported = [n for n, frameworks in OPTIMIZERS.items() if rules.framework in frameworks]
    for name in supported:
        assert rules.optimizer({name.lower(): {"learning_rate": 0.01}}) is not None
    refused = [n for n in OPTIMIZERS if n not in supported]
    for name in refused:
        with pytest.raises(ConfigError, match=rf"optimizer '{name}' is built only by the"):
            rules.optimizer({name: {}})
    with pytest.raises(ConfigError, match=rf"unknown optimizer 'Sophia'; the {rules.framework} backend supports SGD"):
        rules.optimizer({"Sophia": {}})


# --- every loss on padded and unpadded batches ---------------------------------------------

RNG = np.random.default_rng(11)
LENGTHS = [2, 6, 4]


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ragged_features(lengths, seq_len):
    """Hidden states (B, L, 5), attention maps (B, 2, L, L) over the real keys, token logits
    (B, L, 4); garbage at padded positions (what a model leaves there)."""
    b = len(lengths)
    hidden = RNG.normal(size=(b, seq_len, 5))
    scores = RNG.normal(size=(b, 2, seq_len, seq_len)) * 2
    mask = np.arange(seq_len)[None, :] < np.asarray(lengths)[:, None]
    keys = np.where(mask[:, None, None, :], scores, -np.inf)
    attention = softmax(keys)
    logits = RNG.normal(size=(b, seq_len, 4))
    return hidden, attention, logits, mask


def repad(x, mask, seq_len, dims):
    """``x`` padded further to ``seq_len`` along ``dims``, with new garbage there."""
    pad = [(0, 0)] * x.ndim
    for d in dims:
        pad[d] = (0, seq_len - x.shape[d])
    out = np.pad(x, pad)
    for d in dims:
        index = [slice(None)] * x.ndim
        index[d] = slice(x.shape[d], seq_len)
        out[tuple(index)] = 0.5 if d != x.ndim - 1 else 0.0  # keys past the end stay zero
    return out


def masked_expected(name, s, t, mask, rows_dims):
    """The masked mean of a loss: over real positions (and heads) of the first token dim."""
    if rows_dims == (2, 3):  # attention maps: real query rows x heads, keys cut to the longest
        longest = int(mask.sum(1).max())
        s, t = s[:, :, :longest, :longest], t[:, :, :longest, :longest]
        s, t = np.moveaxis(s, 2, 1)[mask[:, :longest]], np.moveaxis(t, 2, 1)[mask[:, :longest]]
        if name in ("KL", "CE"):  # maps that are distributions are compared as log p
            s, t = np.log(np.maximum(s, 1e-12)), np.log(np.maximum(t, 1e-12))
    elif mask is not None:
        s, t = s[mask], t[mask]
    if name == "MSE":
        return np.mean((s - t) ** 2)
    if name == "L1":
        return np.mean(np.abs(s - t))
    p_t, log_p_s = softmax(t), np.log(softmax(s))
    if name == "KL":
        return np.mean((p_t * (np.log(p_t) - log_p_s)).sum(-1))
    return np.mean(-(p_t * log_p_s).sum(-1))


@pytest.mark.parametrize("loss", ["MSE", "L1", "KL", "CE"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_every_loss_is_a_mean_over_real_positions(rules, loss, padded):
    lengths = LENGTHS if padded else [6, 6, 6]
    hidden_s, att_s, _, mask = ragged_features(lengths, 6)
    hidden_t, att_t, _, _ = ragged_features(lengths, 6)
    feature_mask = mask if padded else None
    pairs = [("hidden", hidden_s, hidden_t, (1,))]
    if loss in ("KL", "CE", "MSE"):
        pairs.append(("attention", att_s, att_t, (2, 3)))
    for _, s, t, dims in pairs:
        expected = masked_expected(loss, s, t, mask, dims)
        got = rules.il_loss([s], [t], feature_mask, [dims], [loss], [1.0])
        assert got == pytest.approx(float(expected), rel=1e-5)
        if padded:  # the same batch padded further gives the same loss
            longer = [repad(x, mask, 9, dims) for x in (s, t)]
            mask9 = np.pad(mask, [(0, 0), (0, 3)])
            assert rules.il_loss([longer[0]], [longer[1]], mask9, [dims], [loss], [1.0]) == pytest.approx(got, rel=1e-6)


@pytest.mark.parametrize("kind", ["KL", "CE", "MSE"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_token_logit_distillation_is_a_mean_over_real_tokens(rules, kind, padded):
    lengths = LENGTHS if padded else [6, 6, 6]
    _, _, s, mask = ragged_features(lengths, 6)
    _, _, t, _ = ragged_features(lengths, 6)
    temperature = 2.0
    expected = temperature**2 * masked_expected(kind, s / temperature, t / temperature, mask, (1,))
    got = rules.kd_loss(s, t, mask if padded else None, (1,), temperature, kind)
    assert got == pytest.approx(float(expected), rel=1e-5)
