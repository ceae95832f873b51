"""Per-layer flash stage templates ({i}/{t}): expansion, budgets, the attention-map rule
and the config errors (autokd.stage_templates, re-exported by autokd.distill)."""

import pytest

import autokd
from autokd.config.schema import LayerMapping, Stage
from autokd.distill import (
    drop_attention_maps,
    expand_for_student,
    expand_stage_budget,
    expand_stage_templates,
    is_template,
    template_teacher_layers,
)

TEMPLATE = {
    "block_names": ["bert.encoder.layer.{i}"],
    "layer_mappings_for_knowledge_transfer": [
        [
            ["bert.encoder.layer.{i}", "", "bert.encoder.layer.{t}", ""],
            ["bert.encoder.layer.{i}.attention.self", "1", "bert.encoder.layer.{t}.attention.self", "1"],
        ]
    ],
    "loss_types": [["MSE", "KL"]],
    "loss_weights": [[1.0, 0.5]],
    "train_steps": [20],
}
REGULAR = {"loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5], "train_steps": [30]}


def config(flash=TEMPLATE, regular=REGULAR, **extra):
    section = {"search": {"search_space": {"num_hidden_layers": [1, 2]}}, "flash_distillation": flash}
    if regular is not None:
        section["regular_distillation"] = regular
    section.update(extra)
    return {"model": {"name": "m", "builder": "m:b"}, "auto_distillation": section}


def flash_stages(flash=TEMPLATE):
    return autokd.load_config(config(flash)).auto_distillation.flash_stages()


def test_a_template_expands_to_one_stage_per_student_layer_paired_with_its_teacher_layer():
    (template,) = flash_stages()
    assert is_template(template)
    layers = template_teacher_layers(3, 6)
    assert layers == [1, 3, 5]  # the uniform rule init_from_teacher(layers='uniform') copies from
    stages = expand_stage_templates([template], layers)
    assert [s.block_name for s in stages] == ["bert.encoder.layer.0", "bert.encoder.layer.1", "bert.encoder.layer.2"]
    assert [s.layer_mappings for s in stages] == [
        (
            LayerMapping(f"bert.encoder.layer.{i}", "", f"bert.encoder.layer.{t}", ""),
            LayerMapping(f"bert.encoder.layer.{i}.attention.self", "1", f"bert.encoder.layer.{t}.attention.self", "1"),
        )
        for i, t in enumerate(layers)
    ]
    assert {(s.loss_types, s.loss_weights, s.train_steps) for s in stages} == {(("MSE", "KL"), (1.0, 0.5), 20)}
    assert not any(is_template(s) for s in stages)


def test_a_template_expands_in_place_among_other_flash_stages():
    fixed = Stage("embeddings", (LayerMapping("embeddings", "", "embeddings", ""),), ("MSE",), (1.0,), False, 7)
    (template,) = flash_stages()
    stages = expand_stage_templates([fixed, template, fixed], [0, 1])
    assert [s.block_name for s in stages] == [
        "embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "embeddings",
    ]
    # the budget of each configured stage follows the expansion
    assert expand_stage_budget([0.1, 0.2, 0.3, 0.4], [fixed, template, fixed, fixed], 2) == [0.1, 0.2, 0.2, 0.3, 0.4]
    assert expand_stage_budget(0.25, [fixed, template], 2) == 0.25
    with pytest.raises(ValueError, match="budget has 1 fractions for 2 configured stages"):
        expand_stage_budget([0.5], [fixed, template], 2)


def test_attention_maps_are_dropped_only_where_the_head_counts_differ():
    stages = expand_stage_templates(flash_stages(), [1, 3])
    same, none = drop_attention_maps(stages, 4, 4)
    assert same == stages and none is None
    kept, dropped = drop_attention_maps(stages, 2, 4)
    assert dropped == {
        "reason": "student has 2 heads, teacher 4",
        "layers": ["bert.encoder.layer.0.attention.self", "bert.encoder.layer.1.attention.self"],
    }
    assert [(s.layer_mappings, s.loss_types, s.loss_weights) for s in kept] == [
        ((LayerMapping(f"bert.encoder.layer.{i}", "", f"bert.encoder.layer.{t}", ""),), ("MSE",), (1.0,))
        for i, t in [(0, 1), (1, 3)]
    ]


@pytest.mark.parametrize(
    ("flash", "regular", "message"),
    [
        (
            {**TEMPLATE, "block_names": ["bert.encoder.layer.{j}"]},
            REGULAR,
            "auto_distillation.flash_distillation.block_names: unknown placeholder {j} in 'bert.encoder.layer.{j}'; "
            "stage templates know {i} (the student layer) and {t} (its teacher layer)",
        ),
        (
            {**TEMPLATE, "block_names": ["bert.encoder"]},
            REGULAR,
            "auto_distillation.flash_distillation.block_names: a stage template trains one student layer per stage, "
            "so its block name needs {i}, e.g. 'bert.encoder.layer.{i}' (got 'bert.encoder')",
        ),
        (
            {
                **TEMPLATE,
                "layer_mappings_for_knowledge_transfer": [
                    [["bert.encoder.layer.{t}", "", "bert.encoder.layer.{t}", ""]]
                ],
                "loss_types": [["MSE"]],
                "loss_weights": [[1.0]],
            },
            REGULAR,
            "auto_distillation.flash_distillation.layer_mappings_for_knowledge_transfer[0]: {t} in "
            "'bert.encoder.layer.{t}' names a teacher layer, here a student module is named; use {i}",
        ),
        (
            {"layer_mappings_for_knowledge_transfer": [["a", "b"]], "train_steps": [5]},
            {"layer_mappings_for_knowledge_transfer": [["bert.encoder.layer.{i}", "bert.encoder.layer.{t}"]]},
            "auto_distillation.regular_distillation.layer_mappings_for_knowledge_transfer: {i}/{t} stage templates "
            "are flash stages only (a regular stage trains the whole student at once); write the layer names out, "
            "or move the stage to flash_distillation",
        ),
    ],
)
def test_a_bad_template_is_refused_at_load_naming_the_field_and_the_fix(flash, regular, message):
    with pytest.raises(autokd.ConfigError) as err:
        autokd.load_config(config(flash, regular))
    assert message in str(err.value)


def test_a_final_budget_is_given_per_configured_stage_the_template_counting_once():
    loaded = autokd.load_config(config(final_distillation={"train_steps": [40, 60]}))
    assert len(loaded.auto_distillation.flash_stages()) == 1
    with pytest.raises(autokd.ConfigError, match=r"train_steps: 3 values for 2 stages"):
        autokd.load_config(config(final_distillation={"train_steps": [40, 40, 60]}))


def test_a_students_stages_and_extras_in_one_call():
    fixed = Stage("embeddings", (LayerMapping("embeddings", "", "embeddings", ""),), ("MSE",), (1.0,), False, 7)
    (template,) = flash_stages()
    stages, extras = expand_for_student([fixed, template], 2, 6, 1, 4)
    assert [s.block_name for s in stages] == ["embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert [m.teacher_layer for s in stages[1:] for m in s.layer_mappings] == [
        "bert.encoder.layer.2",
        "bert.encoder.layer.5",
    ]
    assert extras == {
        "teacher_layers": [2, 5],
        "attention_maps_not_distilled": {
            "reason": "student has 1 heads, teacher 4",
            "layers": ["bert.encoder.layer.0.attention.self", "bert.encoder.layer.1.attention.self"],
        },
    }
    assert expand_for_student([fixed], 2, 6, 1, 4) == ([fixed], {})
    assert expand_for_student([template], 2, 6, 4, 4)[1] == {"teacher_layers": [2, 5]}
