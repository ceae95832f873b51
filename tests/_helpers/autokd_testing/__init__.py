"""What several test suites share, defined once: the AutoDistillation design's search
space and its ``Trainer.autodistillation_config`` dict (:mod:`autokd_testing.design`), and the
tiny BERT every framework's tests build (:mod:`autokd_testing.tiny_bert`). On the path of
every suite through ``pythonpath = ["tests/_helpers"]`` in the root ``pyproject.toml``; nothing here imports
a framework at import time."""

from .design import MOBILEBERT_SPACE, design_stages, seed_dict_config
from .tiny_bert import TINY_BERT, VOCAB, tiny_bert_options

__all__ = ["MOBILEBERT_SPACE", "TINY_BERT", "VOCAB", "design_stages", "seed_dict_config", "tiny_bert_options"]
