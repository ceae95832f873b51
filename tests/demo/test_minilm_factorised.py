"""The main job's factorised students (search dimension ``embedding_size``): a stock
MobileBERT that computes the BERT student with its word embeddings factorised."""

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

from autokd_minilm import task
from autokd_minilm.factorised import embedding_size_of, factorise


def _bert(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-5,  # MobileBERT's embedding and output LayerNorms use 1e-5
        attn_implementation="eager",
    )
    return BertModel(config).eval()


def _inputs():
    ids = torch.tensor([[1, 5, 7, 9, 2, 0], [1, 3, 2, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}


def test_a_full_rank_factorisation_computes_the_bert_student():
    bert = _bert()
    mobile = factorise(bert, 31).eval()  # rank 31 of a 32-wide table: only the last direction lost
    assert type(mobile).__name__ == "MobileBertModel" and embedding_size_of(mobile) == 31
    with torch.no_grad():
        words = bert.embeddings.word_embeddings.weight
        # keep the table's top 31 directions only, in the BERT model too
        u, s, vt = torch.linalg.svd(words.double(), full_matrices=False)
        bert.embeddings.word_embeddings.weight.copy_(((u[:, :31] * s[:31]) @ vt[:31]).float())
        a = bert(**_inputs()).last_hidden_state
        b = mobile(**_inputs()).last_hidden_state
    mask = _inputs()["attention_mask"].bool()
    assert torch.allclose(a[mask], b[mask], atol=1e-5)


def test_parameters_are_the_factorised_ones_not_a_multiplied_out_table():
    bert = _bert()
    mobile = factorise(bert, 8)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # the 100 x 32 table becomes 100 x 8 + an 8 -> 32 projection with its bias
    assert count(mobile) == count(bert) - 100 * 32 + 100 * 8 + 8 * 32 + 32
    assert tuple(mobile.embeddings.word_embeddings.weight.shape) == (100, 8)


def test_token_weights_decide_which_words_the_low_rank_table_keeps():
    bert = _bert()
    words = bert.embeddings.word_embeddings.weight.detach().double()
    frequent = torch.arange(10, 16)
    weights = torch.full((100,), 1e-6, dtype=torch.float64)
    weights[frequent] = 1.0
    mobile = factorise(bert, 6, weights)
    table = mobile.embeddings.word_embeddings.weight.detach().double()
    projection = mobile.embeddings.embedding_transformation.weight.detach().double()  # (32, 6)
    rebuilt = table @ projection.T
    # six weighted words, rank six: they are rebuilt exactly; the others are not
    assert torch.allclose(rebuilt[frequent], words[frequent], atol=1e-5)
    assert (rebuilt[20:] - words[20:]).norm() > 0.5 * words[20:].norm()
    # unweighted, the same rank does not keep those six words exactly
    plain = factorise(_bert(), 6)
    rebuilt = plain.embeddings.word_embeddings.weight.detach().double() @ (
        plain.embeddings.embedding_transformation.weight.detach().double().T
    )
    assert not torch.allclose(rebuilt[frequent], words[frequent], atol=1e-3)


def test_a_width_at_or_above_the_hidden_size_keeps_bert():
    bert = _bert()
    assert factorise(bert, 32) is bert and embedding_size_of(bert) == 32


def test_a_saved_factorised_student_loads_as_stock_mobilebert(tmp_path):
    student = task.SentenceEncoder(factorise(_bert(), 8), 32)
    student.bert.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "MobileBertModel" and loaded.config.embedding_size == 8
    with torch.no_grad():
        a = student.bert.eval()(**_inputs()).last_hidden_state
        b = loaded(**_inputs()).last_hidden_state
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.slow
def test_the_mains_factorised_student_is_within_a_quarter_and_loads_in_sentence_transformers(tmp_path):
    arch = {"num_hidden_layers": 2, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}
    student = task.build_student({**arch, "embedding_size": 48})
    assert sum(p.numel() for p in student.parameters()) == 5_378_784 <= 22_713_216 // 4
    task.save_student(student, str(tmp_path))
    batch = task.latency_inputs(4)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(student.eval()(**batch), dim=-1)
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(tmp_path), device="cpu")
    texts = list(task.datasets()[1].utterances.texts[:4])
    got = torch.as_tensor(model.encode(texts, convert_to_numpy=True))
    assert got.shape == (4, 384)
    assert torch.allclose(got, expected, atol=1e-4)
