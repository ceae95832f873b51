"""Shared helpers of the core tests (a unique module name, so suites can run together)."""


def seed_dict_config(**search):
    """The seed's Trainer.autodistillation_config dict, 2-layer version."""
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
        "flash_distillation": {
            "knowledge_transfer": {
                "block_names": [f"mobilebert.encoder.layer.{i}" for i in range(2)],
                "layer_mappings_for_knowledge_transfer": [
                    [
                        (
                            f"mobilebert.encoder.layer.{i}.attention.self",
                            "1",
                            f"bert.encoder.layer.{i}.attention.self",
                            "1",
                        ),
                        (f"mobilebert.encoder.layer.{i}.output", f"bert.encoder.layer.{i}.output"),
                    ]
                    for i in range(2)
                ],
                "loss_types": [["KL", "MSE"] for _ in range(2)],
                "loss_weights": [[0.5, 0.5] for _ in range(2)],
                "train_steps": [500 for _ in range(2)],
            },
            "regular_distillation": {
                "layer_mappings_for_knowledge_transfer": [[("cls", "0", "cls", "0")]],
                "loss_types": [["KL"]],
                "add_origin_loss": [True],
                "train_steps": [25000],
            },
        },
    }


def synthetic_metrics(arch):
    """A deterministic landscape: accuracy grows with size, latency too."""
    size = arch["hidden_size"] * arch["num_attention_heads"]
    return {"accuracy": 1 - 100.0 / size, "latency": size / 100.0}
