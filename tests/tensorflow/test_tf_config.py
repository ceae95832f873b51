"""The TF config objects map onto the core's document layout."""

from __future__ import annotations

import pytest

import autokd
from autokd import ConfigError


def seed_config(**overrides):
    from autokd_tensorflow import AutoDistillationConfig, TFDistillationConfig, metrics

    values = dict(
        search_space={"hidden_size": [120, 240], "intermediate_size": [256, 512]},
        search_algorithm="random",
        max_trials=10,
        seed=42,
        metrics=[metrics.Metric(name="eval_loss", greater_is_better=False)],
        knowledge_transfer=TFDistillationConfig(
            train_steps=[3], loss_types=["CE", "CE"], loss_weights=[0.5, 0.5], temperature=1.0
        ),
        regular_distillation=TFDistillationConfig(
            train_steps=[3], loss_types=["CE", "KL"], loss_weights=[0.2, 0.8], temperature=2.0
        ),
    )
    values.update(overrides)
    return AutoDistillationConfig(**values)


def test_the_seed_example_maps_onto_output_distillation_stages():
    config = seed_config()
    assert config.to_autokd_config() == {
        "model": {"framework": "tensorflow"},
        "auto_distillation": {
            "search": {
                "search_space": {"hidden_size": [120, 240], "intermediate_size": [256, 512]},
                "search_algorithm": "random",
                "max_trials": 10,
                "seed": 42,
                "metrics": ["eval_loss"],
                "higher_is_better": [False],
            },
            "flash_distillation": {
                "train_steps": [3],
                "loss_types": ["CE", "CE"],
                "loss_weights": [0.5, 0.5],
                "temperature": 1.0,
            },
            "regular_distillation": {
                "train_steps": [3],
                "loss_types": ["CE", "KL"],
                "loss_weights": [0.2, 0.8],
                "temperature": 2.0,
            },
        },
    }
    cfg = autokd.load_config(config)
    assert cfg.model.framework == "tensorflow"
    (flash,) = cfg.auto_distillation.flash_stages()
    (regular,) = cfg.auto_distillation.regular_stages()
    assert flash == autokd.Stage(None, (), ("CE", "CE"), (0.5, 0.5), False, 3, 1.0)
    assert regular == autokd.Stage(None, (), ("CE", "KL"), (0.2, 0.8), True, 3, 2.0)


def test_layer_mappings_and_blocks_map_onto_intermediate_stages():
    from autokd_tensorflow import TFDistillationConfig

    config = seed_config(
        knowledge_transfer=TFDistillationConfig(
            train_steps=[5, 6],
            block_names=["bert.encoder.layer.0", "bert.encoder.layer.1"],
            layer_mappings=[[("hidden_states", "1", "hidden_states", "1")], [("hidden_states.2", "hidden_states.2")]],
            loss_types=[["MSE"], ["KL"]],
        )
    )
    stages = autokd.load_config(config).auto_distillation.flash_stages()
    assert [(s.block_name, s.train_steps, s.loss_types) for s in stages] == [
        ("bert.encoder.layer.0", 5, ("MSE",)),
        ("bert.encoder.layer.1", 6, ("KL",)),
    ]
    assert stages[1].layer_mappings == (autokd.LayerMapping("hidden_states.2", "", "hidden_states.2", ""),)


def test_metric_directions_come_from_the_metric_or_its_known_direction():
    from autokd_tensorflow import metrics

    config = seed_config(metrics=[metrics.Metric("accuracy"), metrics.Metric("eval_loss", greater_is_better=False)])
    search = config.to_autokd_config()["auto_distillation"]["search"]
    assert (search["metrics"], search["higher_is_better"]) == (["accuracy", "eval_loss"], [True, False])
    with pytest.raises(
        ConfigError,
        match=r"metrics\[1\]: the direction of 'bleurgh' is not known: "
        r"metrics.Metric\(name='bleurgh', greater_is_better=True or False\)",
    ):
        seed_config(metrics=[metrics.Metric("accuracy", True), "bleurgh"]).to_autokd_config()


def test_problems_are_reported_with_their_core_paths():
    from autokd_tensorflow import TFDistillationConfig

    bad = seed_config(max_trials=0, knowledge_transfer=TFDistillationConfig(train_steps=[3], loss_types=["CE"]))
    with pytest.raises(ConfigError) as info:
        autokd.load_config(bad)
    text = str(info.value)
    assert "auto_distillation.search.max_trials: must be a positive number of trials, got 0" in text
    assert "auto_distillation.flash_distillation.loss_types: output distillation takes 2 loss types" in text


def test_a_stage_template_is_refused_by_the_tensorflow_backend_before_training():
    from autokd_tensorflow import TFDistillationConfig
    from autokd_tensorflow.optimization import validate_stages

    config = seed_config(
        knowledge_transfer=TFDistillationConfig(
            train_steps=[5],
            block_names=["bert.encoder.layer.{i}"],
            layer_mappings=[[("bert.encoder.layer.{i}", "bert.encoder.layer.{t}")]],
            loss_types=[["MSE"]],
        )
    )
    loaded = autokd.load_config(config)  # the template itself is valid; this backend cannot expand it
    with pytest.raises(ConfigError) as info:
        validate_stages(loaded)
    assert str(info.value) == (
        "invalid configuration: auto_distillation.flash_distillation: {i}/{t} stage templates are expanded by autokd-torch only; for the "
        "tensorflow backend write one flash stage per student layer (block_names and layer mappings with the layer "
        "numbers)"
    )
