import pytest

import autokd
from autokd import plugins


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test loads plugins anew, with no plugin environment variables set."""
    for var in ("AUTOKD_STRICT_PLUGINS", "AUTOKD_DISABLE_PLUGINS", "AUTOKD_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    # The core's tests see only the core and the fake plugins they install themselves,
    # even in an environment where real plugins are installed.
    real = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: (ep for ep in real() if ep.value.startswith("fakeplugin")))
    plugins.reset()
    yield
    plugins._extra_plugins.clear()
    plugins.reset()


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
                        (f"mobilebert.encoder.layer.{i}.attention.self", "1", f"bert.encoder.layer.{i}.attention.self", "1"),
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
