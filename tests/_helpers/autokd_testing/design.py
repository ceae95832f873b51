"""The AutoDistillation design's own search space and config dict (its "Usage for
Trainer.autodistillation" section), as the tests use them."""

from __future__ import annotations

#: The design's MobileBERT search space (``hidden_size`` 246 is the design's own value).
MOBILEBERT_SPACE = {
    "hidden_size": [128, 246, 384, 512],
    "intra_bottleneck_size": [64, 96, 128, 160],
    "num_attention_heads": [1, 2, 4, 8],
    "intermediate_size": [384, 512, 640],
    "num_feedforward_networks": [2, 4, 6],
}


def design_stages(
    num_layers=2, flash_steps=500, regular_steps=25000, regular_mapping=("cls", "0", "cls", "0"), loss_weights=True
):
    """The design's ``flash_distillation`` section for MobileBERT from BERT, at ``num_layers``
    layers: per layer the attention maps (``'1'``, KL) and the block output (MSE) of
    ``mobilebert.encoder.layer.i`` against ``bert.encoder.layer.i``; then regular
    distillation of ``regular_mapping`` with the origin loss."""
    transfer = {
        "block_names": [f"mobilebert.encoder.layer.{i}" for i in range(num_layers)],
        "layer_mappings_for_knowledge_transfer": [
            [
                (f"mobilebert.encoder.layer.{i}.attention.self", "1", f"bert.encoder.layer.{i}.attention.self", "1"),
                (f"mobilebert.encoder.layer.{i}.output", f"bert.encoder.layer.{i}.output"),
            ]
            for i in range(num_layers)
        ],
        "loss_types": [["KL", "MSE"] for _ in range(num_layers)],
    }
    if loss_weights:
        transfer["loss_weights"] = [[0.5, 0.5] for _ in range(num_layers)]
    transfer["train_steps"] = [flash_steps for _ in range(num_layers)]
    return {
        "knowledge_transfer": transfer,
        "regular_distillation": {
            "layer_mappings_for_knowledge_transfer": [[tuple(regular_mapping)]],
            "loss_types": [["KL"]],
            "add_origin_loss": [True],
            "train_steps": [regular_steps],
        },
    }


def seed_dict_config(**search):
    """The design's ``Trainer.autodistillation_config`` dict (advanced mode), 2 layers of
    flash distillation instead of 24 and a 2-parameter space; ``search`` overrides keys
    of its ``search`` section."""
    return {
        "search": {
            "search_space": {"hidden_size": [128, 256], "num_attention_heads": [2, 4]},
            "search_algorithm": "random",
            "metrics": ["accuracy", "latency"],
            "higher_is_better": [True, False],
            "max_trials": 3,
            "seed": 42,
            **search,
        },
        "flash_distillation": design_stages(),
    }
