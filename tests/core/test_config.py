"""Every config layout of the design parses; every validation error names its path."""

import pathlib

import pytest
from autokd_testing import seed_dict_config

import autokd
from autokd import ConfigError, LayerMapping, Stage, load_config

CONFIGS = pathlib.Path(__file__).parent / "configs"


def problems_of(conf):
    """The problems a search finds in ``conf`` (loaded with the plugins that run it, so
    metric directions and names are checked too)."""
    with pytest.raises(ConfigError) as info:
        load_config(conf, plugins=autokd.registry())
    return info.value.problems


def test_seed_autodistillation_yaml_pytorch():
    cfg = load_config(CONFIGS / "autodistillation_pytorch.yaml")
    assert cfg.model.name == "MobileBERT_NAS" and cfg.model.framework == "pytorch"
    search = cfg.search
    assert search.space["num_feedforward_networks"] == [2, 4, 6]
    assert search.space.size == 4 * 4 * 4 * 3 * 3
    assert (search.search_algorithm, search.max_trials, search.seed) == ("BO", 10, 42)
    assert search.objectives() == [autokd.Objective("accuracy", True), autokd.Objective("latency", False)]
    assert cfg.auto_distillation.flash_stages() == [
        Stage(
            block_name="mobilebert.encoder.layer.0",
            layer_mappings=(
                LayerMapping(
                    "mobilebert.encoder.layer.0.attention.self", "1", "bert.encoder.layer.0.attention.self", "1"
                ),
                LayerMapping("mobilebert.encoder.layer.0.output", "", "bert.encoder.layer.0.output", ""),
            ),
            loss_types=("KL", "MSE"),
            loss_weights=(0.5, 0.5),
            add_origin_loss=False,
            train_steps=5000,
        )
    ]
    # regular_distillation in the YAML is a single stage written without the per-stage lists
    (regular,) = cfg.auto_distillation.regular_stages()
    assert regular.layer_mappings == (LayerMapping("mobilebert.output", "", "bert.output", ""),)
    assert (regular.loss_types, regular.loss_weights, regular.add_origin_loss) == (("KL",), (1.0,), True)
    assert cfg.train.optimizer == {"AdamW": {"learning_rate": 0.0001}}
    assert cfg.evaluation.options_for("latency") == {"batch_size": 1, "seq_len": 128}
    assert cfg.evaluation.options_for("accuracy") == {}


def test_seed_autodistillation_yaml_tensorflow_output_distillation():
    cfg = load_config(CONFIGS / "autodistillation_tensorflow.yaml")
    assert cfg.model.framework == "tensorflow"
    # no higher_is_better: both metrics have known directions
    assert cfg.search.objectives() == [autokd.Objective("accuracy", True), autokd.Objective("latency", False)]
    (stage,) = cfg.auto_distillation.flash_stages()
    assert stage == Stage(None, (), ("CE", "CE"), (0.5, 0.5), False, 5000, 1.0)


@pytest.mark.parametrize("name", ["flash_distillation.yaml", "regular_distillation.yaml", "kd_distillation.yaml"])
def test_seed_single_distillation_yamls(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.auto_distillation is None
    assert cfg.distillation.train.optimizer == {"SGD": {"learning_rate": 0.001}}
    expected = {
        "flash_distillation.yaml": {
            "IntermediateLayersKnowledgeDistillationLoss": {
                "layer_mappings_for_knowledge_transfer": [
                    ["mobilebert.encoder.layer.0.attention.self", "1", "bert.encoder.layer.0.attention.self", "1"],
                    ["mobilebert.encoder.layer.0.output", "bert.encoder.layer.0.output"],
                ],
                "loss_types": ["KL", "MSE"],
                "loss_weights": [0.5, 0.5],
                "add_origin_loss": False,
            }
        },
        "regular_distillation.yaml": {
            "IntermediateLayersKnowledgeDistillationLoss": {
                "layer_mappings_for_knowledge_transfer": [["mobilebert.output", "bert.output"]],
                "loss_types": ["KL"],
                "loss_weights": [1],
                "add_origin_loss": True,
            }
        },
        "kd_distillation.yaml": {
            "KnowledgeDistillationLoss": {"temperature": 1.0, "loss_types": ["CE", "CE"], "loss_weights": [0.5, 0.5]}
        },
    }
    assert cfg.distillation.train.criterion == expected[name]  # the arguments as the seed's YAML gives them


def test_seed_trainer_dict_with_24_blocks():
    conf = seed_dict_config()
    conf["flash_distillation"]["knowledge_transfer"] = {
        "block_names": [f"mobilebert.encoder.layer.{i}" for i in range(24)],
        "layer_mappings_for_knowledge_transfer": [
            [
                (f"mobilebert.encoder.layer.{i}.attention.self", "1", f"bert.encoder.layer.{i}.attention.self", "1"),
                (f"mobilebert.encoder.layer.{i}.output", f"bert.encoder.layer.{i}.output"),
            ]
            for i in range(24)
        ],
        "loss_types": [["KL", "MSE"] for _ in range(24)],
        "loss_weights": [[0.5, 0.5] for _ in range(24)],
        "train_steps": [500 for _ in range(24)],
    }
    cfg = load_config(conf)
    stages = cfg.auto_distillation.flash_stages()
    assert len(stages) == 24
    assert stages[23].block_name == "mobilebert.encoder.layer.23"
    assert stages[23].layer_mappings[0].teacher_process == "1"
    assert {s.train_steps for s in stages} == {500}
    (regular,) = cfg.auto_distillation.regular_stages()
    assert regular == Stage(None, (LayerMapping("cls", "0", "cls", "0"),), ("KL",), (1.0,), True, 25000, 1.0)


def test_seed_oob_dict_without_metrics_or_steps_uses_defaults():
    conf = {
        "search": {"search_space": {"hidden_size": [128, 246, 384, 512], "intermediate_size": [384, 512, 640]}},
        "flash_distillation": {
            "knowledge_transfer": {
                "block_names": ["mobilebert.encoder.layer.0"],
                "layer_mappings_for_knowledge_transfer": [[("a", "1", "b", "1"), ("c", "d")]],
                "loss_types": [["KL", "MSE"]],
            },
            "regular_distillation": {
                "layer_mappings_for_knowledge_transfer": [[("cls", "0", "cls", "0")]],
                "loss_types": [["KL"]],
                "add_origin_loss": [True],
            },
        },
    }
    cfg = load_config(conf)
    assert cfg.search.metrics == ["eval_loss"]
    assert cfg.search.objectives() == [autokd.Objective("eval_loss", False)]
    assert cfg.auto_distillation.flash_stages()[0].train_steps == 500
    assert cfg.auto_distillation.flash_stages()[0].loss_weights == (0.5, 0.5)


def test_config_objects_are_accepted():
    cfg = load_config(seed_dict_config())
    assert load_config(cfg) is cfg
    assert load_config(cfg.auto_distillation).search == cfg.search

    class SeedStyle:
        def to_autokd_config(self):
            return seed_dict_config(max_trials=7)

    assert load_config(SeedStyle()).search.max_trials == 7
    assert load_config(cfg, framework="tensorflow").model.framework == "tensorflow"


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        """
model: {framework: jax}
auto_distillation:
  search:
    search_space: {'hidden_size': [128, 246], 'layers': 4, 'heads': []}
    metrics: ['accuracy', 'latency', 'f1']
    higher_is_better: [True, False]
    max_trials: 10,
    seed: 42
    bogus: 1
  flash_distillation:
    block_names: ['l.0', 'l.1']
    layer_mappings_for_knowledge_transfer: [[['l.0.a', '1', 't.0.a', '1'], ['l.0.o', 't.0.o']]]
    loss_types: [['KL']]
    train_steps: [0, 10, 20]
distillation:
  train:
    optimizer: {SGD: {learning_rate: 0.001}}
    criterion:
      KnowledgeDistillationLoss:
        temperature: 1.0,
        loss_types: ['CE', 'CE']
        loss_weights: [0.5, 0.5, 0.1]
evaluation:
  latency: 5
extra_section: {}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert sorted(info.value.problems) == sorted(
        [
            "extra_section: unknown section (known sections: auto_distillation, data, distillation, evaluation, model, output, train)",
            "model.framework: 'jax' is not one of ['pytorch', 'tensorflow']",
            "auto_distillation.search.max_trials: expected an integer, got str '10,' (a trailing comma? YAML reads 10, as a string)",
            "auto_distillation.search.bogus: unknown key (known keys here: search_space, search_algorithm, metrics, "
            "higher_is_better, max_trials, seed, advisor_options, constraints, fidelity, executor)",
            "auto_distillation.search.search_space.layers: choices must be a list, got int 4 (write [4] for a single choice)",
            "auto_distillation.search.search_space.heads: the list of choices is empty",
            "auto_distillation.search.higher_is_better: 2 values for 3 metrics",
            "auto_distillation.flash_distillation.layer_mappings_for_knowledge_transfer: 1 mapping groups for 2 block_names",
            "auto_distillation.flash_distillation.loss_types: 1 lists for 2 block_names",
            "auto_distillation.flash_distillation.train_steps: 3 values for 2 block_names",
            "distillation.train.criterion.KnowledgeDistillationLoss.temperature: expected a number, got str '1.0,' "
            "(a trailing comma? YAML reads 1.0, as a string)",
            "distillation.train.criterion.KnowledgeDistillationLoss.loss_weights: 3 weights for 2 loss types",
            "evaluation.latency: expected the options of metric 'latency' as a mapping (e.g. latency: {batch_size: 1}), got int 5",
        ]
    )
    assert str(info.value).startswith(f"invalid configuration in {path} (13 problems):\n  - ")


@pytest.mark.parametrize(
    "search, flash, expected",
    [
        ({"max_trials": 0}, None, "auto_distillation.search.max_trials: must be a positive number of trials, got 0"),
        ({"metrics": []}, None, "auto_distillation.search.metrics: empty list: name at least one metric to optimise"),
        (
            {"metrics": ["accuracy", "bleu_plus"], "higher_is_better": None},
            None,
            "auto_distillation.search.higher_is_better: missing, and the direction of 'bleu_plus' is not known: "
            "give one true/false per metric, e.g. higher_is_better: [true, true]",
        ),
        (
            {"constraints": ["latency < fast"]},
            None,
            "auto_distillation.search.constraints[0]: 'latency < fast' is not a constraint like 'latency <= 5'",
        ),
        (
            {"search_space": {"a": "abc"}},
            None,
            "auto_distillation.search.search_space.a: choices must be a list, got str 'abc'",
        ),
        (
            {},
            {"train_steps": [-1]},
            "auto_distillation.flash_distillation.train_steps[0]: must be a positive number of steps, got -1",
        ),
        (
            {},
            {"loss_weights": [[0.5]]},
            "auto_distillation.flash_distillation.loss_weights[0]: 1 weights for 2 loss types",
        ),
        (
            {},
            {"loss_types": [["KL", "MSE", "L1"]]},
            "auto_distillation.flash_distillation.loss_types[0]: 3 loss types for 2 layer mappings",
        ),
        (
            {},
            {"layer_mappings_for_knowledge_transfer": [[["a", "b", "c"]]]},
            "a layer mapping has 2 items (student_layer, teacher_layer) or 4",
        ),
        ({}, {"temperature": 0}, "auto_distillation.flash_distillation.temperature: must be positive, got 0"),
        ({}, {"block_names": []}, "auto_distillation.flash_distillation.block_names: empty list"),
    ],
)
def test_single_validation_errors(search, flash, expected):
    doc = {
        "auto_distillation": {
            "search": {"search_space": {"a": [1, 2]}, "metrics": ["accuracy"], **search},
            "flash_distillation": {
                "block_names": ["l.0"],
                "layer_mappings_for_knowledge_transfer": [[["l.0.a", "1", "t.0.a", "1"], ["l.0.o", "t.0.o"]]],
                "loss_types": [["KL", "MSE"]],
                **(flash or {}),
            },
        }
    }
    (problem,) = problems_of(doc)
    assert problem.startswith(expected) or expected in problem, problem


def test_known_directions():
    assert autokd.known_direction("eval_loss") is False
    assert autokd.known_direction("latency") is False
    assert autokd.known_direction("params") is False
    assert autokd.known_direction("eval_accuracy") is True
    assert autokd.known_direction("f1") is True
    assert autokd.known_direction("mystery") is None


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("search: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_yaml_syntax_error_has_a_line_number(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("auto_distillation:\n  search: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_config(path)


def test_missing_file_and_wrong_type():
    with pytest.raises(ConfigError, match="no such file: nowhere.yaml"):
        load_config("nowhere.yaml")
    with pytest.raises(ConfigError, match="expected a YAML file path, a dict or a config object, got int"):
        load_config(3)


def test_flash_and_regular_given_twice():
    doc = seed_dict_config()
    doc["regular_distillation"] = {"loss_types": ["CE", "KL"]}
    (problem,) = problems_of(doc)
    assert problem == "regular_distillation: given both at top level and under flash_distillation; keep one"


def _search_with(**keys) -> dict:
    return {"auto_distillation": {"search": {"search_space": {"layers": [1, 2]}, "metrics": ["eval_loss"], **keys}}}


def test_storage_and_study_name_are_advisor_options_and_the_old_spelling_still_reads():
    new = load_config(_search_with(advisor_options={"storage": "journal:///s.log", "study_name": "s"}))
    with pytest.warns(DeprecationWarning) as caught:
        old = load_config(_search_with(storage="journal:///s.log", study_name="s", advisor_options={"n": 1}))
    assert [str(w.message) for w in caught] == [
        "auto_distillation.search.storage is deprecated: write it as "
        "auto_distillation.search.advisor_options.storage (read from there now)",
        "auto_distillation.search.study_name is deprecated: write it as "
        "auto_distillation.search.advisor_options.study_name (read from there now)",
    ]
    assert caught[0].filename == __file__  # points at the caller of load_config
    assert new.search.advisor_options == {"storage": "journal:///s.log", "study_name": "s"}
    assert old.search.advisor_options == {"n": 1, "storage": "journal:///s.log", "study_name": "s"}
    assert not hasattr(old.search, "storage")


def test_storage_given_in_both_spellings_must_agree():
    with pytest.warns(DeprecationWarning):
        same = load_config(_search_with(storage="journal:///a.log", advisor_options={"storage": "journal:///a.log"}))
    assert same.search.advisor_options == {"storage": "journal:///a.log"}
    with pytest.raises(ConfigError) as info:
        load_config(_search_with(storage="journal:///a.log", advisor_options={"storage": "journal:///b.log"}))
    assert info.value.problems == [
        "auto_distillation.search.storage: given both here ('journal:///a.log') and as "
        "auto_distillation.search.advisor_options.storage ('journal:///b.log'); keep advisor_options.storage"
    ]


def test_loading_a_config_loads_no_plugin_and_whoever_runs_it_checks_its_metric_names(monkeypatch):
    from autokd import plugins

    doc = _search_with(constraints=["latncy <= 5"])
    monkeypatch.setattr(plugins, "_registry", None)
    monkeypatch.setattr(plugins, "_load", lambda: pytest.fail("load_config loaded the plugins"))
    cfg = load_config(doc)  # the metric is not checked: that needs the registry
    assert cfg.search.constraints == ["latncy <= 5"]
    monkeypatch.undo()
    with pytest.raises(ConfigError) as info:
        autokd.AutoDistillation(lambda arch: arch, doc)
    (problem,) = info.value.problems
    assert problem.startswith(
        "auto_distillation.search.constraints[0]: 'latncy' is not a metric of this search: add it to evaluation.record"
    )
