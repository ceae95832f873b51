"""Both backends give the same loss on the same padded batch, whatever its padded length
(issues #18 and #20): a tiny attention model written once in PyTorch and once in Keras with
the same weights, distilled through each backend's own path (teacher forward, feature
capture, measured per-token dimensions, criteria), on one batch padded to 9 and to 14."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("autokd_torch")
pytest.importorskip("autokd_tensorflow")

import autokd  # noqa: E402

VOCAB, WIDTH, HEADS, CLASSES = 30, 8, 2, 5
LENGTHS = [3, 9, 5, 7]


def weights(seed):
    rng = np.random.default_rng(seed)
    return {
        "embedding": rng.normal(size=(VOCAB, WIDTH)).astype("float32"),
        "query": rng.normal(size=(WIDTH, WIDTH)).astype("float32") * 0.5,
        "key": rng.normal(size=(WIDTH, WIDTH)).astype("float32") * 0.5,
        "out": rng.normal(size=(WIDTH, CLASSES)).astype("float32"),
    }


class TorchTiny(torch.nn.Module):
    """Embedding, one masked multi-head attention, per-token logits; a dict output."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in w.items()})

    def forward(self, input_ids, attention_mask):
        x = self.w["embedding"][input_ids]
        b, length, _ = x.shape

        def heads(y):
            return y.view(b, length, HEADS, WIDTH // HEADS).transpose(1, 2)

        scores = heads(x @ self.w["query"]) @ heads(x @ self.w["key"]).transpose(-1, -2) / (WIDTH // HEADS) ** 0.5
        scores = scores.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf"))
        attentions = scores.softmax(-1)
        hidden = torch.tanh(x + attentions.mean(1) @ x)
        return {"hidden": hidden, "attentions": attentions, "logits": hidden @ self.w["out"]}


def keras_tiny(w):
    from autokd_tensorflow._tf import keras

    class KerasTiny(keras().Model):
        def __init__(self):
            super().__init__()
            self.w = {k: tf.Variable(v, name=k) for k, v in w.items()}

        def call(self, inputs, training=False):
            x = tf.gather(self.w["embedding"], inputs["input_ids"])
            b, length = tf.shape(x)[0], tf.shape(x)[1]

            def heads(y):
                return tf.transpose(tf.reshape(y, [b, length, HEADS, WIDTH // HEADS]), [0, 2, 1, 3])

            q, k = heads(tf.matmul(x, self.w["query"])), heads(tf.matmul(x, self.w["key"]))
            scores = tf.matmul(q, k, transpose_b=True) / (WIDTH // HEADS) ** 0.5
            real = tf.cast(inputs["attention_mask"], tf.bool)[:, None, None, :]
            attentions = tf.nn.softmax(tf.where(real, scores, -np.inf), -1)
            hidden = tf.tanh(x + tf.matmul(tf.reduce_mean(attentions, 1), x))
            return {"hidden": hidden, "attentions": attentions, "logits": tf.matmul(hidden, self.w["out"])}

    return KerasTiny()


def batch(pad_to):
    rng = np.random.default_rng(5)
    ids = rng.integers(1, VOCAB, size=(len(LENGTHS), 14))[:, :pad_to]  # the same real tokens at any length
    mask = (np.arange(pad_to)[None, :] < np.asarray(LENGTHS)[:, None]).astype("int64")
    return {"input_ids": ids.astype("int64"), "attention_mask": mask}


MAPPINGS = [["", "attentions", "", "attentions"], ["", "hidden", "", "hidden"]]


def torch_losses(data):
    from autokd_torch import IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss

    teacher, student = TorchTiny(weights(0)).eval(), TorchTiny(weights(1)).eval()
    inputs = {k: torch.from_numpy(v) for k, v in data.items()}
    out = {}
    for name, criterion in (
        ("intermediate", IntermediateLayersKnowledgeDistillationLoss(MAPPINGS, ["KL", "MSE"], [0.5, 0.5])),
        ("logits", KnowledgeDistillationLoss(2.0, ["CE", "KL"], [0.0, 1.0])),
    ):
        criterion.student_model, criterion.teacher_model = student, teacher
        criterion.teacher_model_forward(inputs)
        with torch.no_grad():
            out[name] = float(criterion.compute_loss(student(**inputs), None))
        criterion.detach()
    return out


def tf_losses(data, graph=False):
    from autokd_tensorflow import IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss

    teacher, student = keras_tiny(weights(0)), keras_tiny(weights(1))
    inputs = {k: tf.constant(v) for k, v in data.items()}
    out = {}
    for name, criterion in (
        ("intermediate", IntermediateLayersKnowledgeDistillationLoss(MAPPINGS, ["KL", "MSE"], [0.5, 0.5])),
        ("logits", KnowledgeDistillationLoss(2.0, ["CE", "KL"], [0.0, 1.0])),
    ):
        criterion.attach(student, teacher)

        def step(inputs, criterion=criterion):
            t_out, t_feats = criterion.forward_teacher(inputs)
            s_out, s_feats = criterion.forward_student(inputs, training=False)
            criterion.build(s_feats, t_feats)
            return criterion.compute(s_out, s_feats, t_out, t_feats, None)

        if graph:  # measured eagerly once, then traced with a dynamic padded length
            criterion.prepare(inputs)
            spec = {k: tf.TensorSpec([None, None], tf.int64) for k in inputs}
            step = tf.function(step, input_signature=[spec])
        out[name] = float(step(inputs))
        criterion.detach()
    return out


@pytest.mark.parametrize("pad_to", [9, 14])
def test_torch_and_tensorflow_agree_on_a_padded_batch(pad_to):
    data = batch(pad_to)
    got_torch, got_tf = torch_losses(data), tf_losses(data)
    for name in got_torch:
        assert got_tf[name] == pytest.approx(got_torch[name], rel=1e-5), name
    assert tf_losses(data, graph=True) == pytest.approx(got_tf, rel=1e-6)


def test_the_padded_length_changes_no_loss_in_either_backend():
    short, long = batch(9), batch(14)
    assert torch_losses(long) == pytest.approx(torch_losses(short), rel=1e-6)
    assert tf_losses(long) == pytest.approx(tf_losses(short), rel=1e-6)
    assert autokd.distill.token_dims((1, 14, 8), (1, 13, 8), 14) == (1,)
    assert autokd.distill.token_dims((1, 8), (1, 8), 14) == ()  # pooled: not per-token
