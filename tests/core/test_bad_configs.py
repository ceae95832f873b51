"""Bad input refused before any training, one clear line each, exit 2 (#13, items 11-16
and 18). ``BAD_CONFIGS`` is the table docs/reliability.md counts."""

import os
import sys
import textwrap

import pytest

import autokd
from autokd.cli import main

USER = """
import os
sep_alias = os.sep
def build(arch):
    return dict(arch)
def train(model):
    raise AssertionError("no training may start for a bad config")
def evaluate(model):
    return {"accuracy": 0.5, "latency": 1.0}
def data():
    return []
"""

GOOD = {
    "model": "{name: t, builder: 'cfguser:build'}",
    "search": "{hidden_size: [128, 256], heads: [2, 4]}",
    "algorithm": "random",
    "metrics": "[accuracy, latency]",
    "extra_search": "",
    "train": "{function: 'cfguser:train'}",
    "evaluation": "{function: 'cfguser:evaluate'}",
    "data": "{}",
}

TEMPLATE = """\
model: {model}
auto_distillation:
  search:
    search_space: {search}
    search_algorithm: {algorithm}
    metrics: {metrics}
    max_trials: 2
{extra_search}train: {train}
evaluation: {evaluation}
data: {data}
"""


def config(**changes):
    values = dict(GOOD, **changes)
    if values["extra_search"]:
        values["extra_search"] = textwrap.indent(values["extra_search"], "    ") + "\n"
    return TEMPLATE.format(**values)


# (id, file contents (str or bytes, or None for a directory), the one line expected)
BAD_CONFIGS = [
    # 11: a constraint on a metric no trial computes
    (
        "constraint-unknown-metric",
        config(extra_search="constraints: ['params <= 5']"),
        "auto_distillation.search.constraints[0]: 'params' is not a metric of this search: add it to evaluation.record",
    ),
    (
        "constraint-misspelt-objective",
        config(extra_search="constraints: ['latncy <= 5']"),
        "'latncy' is not a metric of this search: add it to evaluation.record (a metric eval_func returns) or install "
        "the evaluator that computes it (did you mean 'latency'?)",
    ),
    # 12: import strings resolved and checked at load
    (
        "train-not-callable",
        config(train="{function: 'os:sep'}"),
        "train.function: 'os:sep' is a str ('/'), not a function: name a callable",
    ),
    (
        "builder-not-callable",
        config(model="{builder: 'cfguser:sep_alias'}"),
        "model.builder: 'cfguser:sep_alias' is a str ('/'), not a function: name a callable",
    ),
    (
        "eval-module-raises",
        config(evaluation="{function: 'cfgraises:evaluate'}"),
        "evaluation.function: importing module 'cfgraises' raised RuntimeError: boom at import",
    ),
    (
        "eval-module-syntax-error",
        config(evaluation="{function: 'cfgsyntax:evaluate'}"),
        "evaluation.function: module 'cfgsyntax' does not compile: invalid syntax",
    ),
    (
        "eval-module-exits",
        config(evaluation="{function: 'cfgexits:evaluate'}"),
        "evaluation.function: importing module 'cfgexits' raised SystemExit: 3",
    ),
    (
        "train-missing-module",
        config(train="{function: 'nosuchmodule_xyz:train'}"),
        "train.function: cannot import module 'nosuchmodule_xyz'",
    ),
    (
        "train-missing-attribute",
        config(train="{function: 'cfguser:nope'}"),
        "train.function: module 'cfguser' has no attribute 'nope'",
    ),
    ("data-not-callable", config(data="{train: 'os:sep'}"), "data.train: 'os:sep' is a str ('/'), not a function"),
    (
        "teacher-module-raises",
        config(model="{builder: 'cfguser:build', teacher: 'cfgraises:teacher'}"),
        "model.teacher: importing module 'cfgraises' raised RuntimeError: boom at import",
    ),
    # 13: misspelt evaluation keys
    (
        "evaluation-latncy",
        config(evaluation="{function: 'cfguser:evaluate', latncy: {batch_size: 1}}"),
        "evaluation.latncy: unknown key (did you mean 'latency'?)",
    ),
    (
        "evaluation-recrod",
        config(evaluation="{function: 'cfguser:evaluate', recrod: [params]}"),
        "evaluation.recrod: unknown key (did you mean 'record'?)",
    ),
    # 14: a string where a list is expected
    (
        "record-string",
        config(evaluation="{function: 'cfguser:evaluate', record: latency}"),
        "evaluation.record: expected a list, got str 'latency' (write [latency] for a one-item list)",
    ),
    (
        "metrics-string",
        config(metrics="accuracy"),
        "auto_distillation.search.metrics: expected a list, got str 'accuracy' (write [accuracy] for a one-item list)",
    ),
    (
        "constraints-string",
        config(extra_search="constraints: 'latency <= 5'"),
        "auto_distillation.search.constraints: expected a list, got str 'latency <= 5'",
    ),
    (
        "block-names-string",
        config().replace("train: {", "  flash_distillation: {block_names: encoder}\ntrain: {", 1),
        "auto_distillation.flash_distillation.block_names: expected a list, got str 'encoder' "
        "(write [encoder] for a one-item list)",
    ),
    (
        "choices-string",
        config(search="{hidden_size: 128}"),
        "auto_distillation.search.search_space.hidden_size: choices must be a list, got int 128 "
        "(write [128] for a single choice)",
    ),
    # 15: files that are not YAML configs
    (
        "binary-file",
        b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00",
        "not UTF-8 text (a binary file?): invalid start byte at byte 8",
    ),
    ("latin-1", "model: {name: caf\xe9}\n".encode("latin-1"), "not UTF-8 text (a binary file?)"),
    ("directory", None, "is a directory, not a YAML config file"),
    (
        "duplicate-key",
        config() + "train: {function: 'cfguser:train'}\n",
        "not valid YAML at line 11, column 1: duplicate key 'train' (first given at line 8); keep one",
    ),
    (
        "duplicate-nested-key",
        config(extra_search="max_trials: 3"),
        "duplicate key 'max_trials' (first given at line 7); keep one",
    ),
    (
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        "the document expands to more than 100,000 YAML nodes through its aliases",
    ),
    (
        "alias-bomb-in-max-trials",
        config().replace(
            "max_trials: 2",
            "max_trials: [&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a], "
            "&c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c], "
            "&e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d], [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]]",
        ),
        "the document expands to more than 100,000 YAML nodes through its aliases",
    ),
    ("self-referencing-alias", "a: &a [*a]\n", "the document expands to more than 100,000 YAML nodes"),
    ("empty-file", "", "the file is empty"),
    # 16: a space too large for the algorithm
    (
        "grid-shuffle-huge",
        config(
            algorithm="grid",
            search="{" + ", ".join(f"p{i}: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" for i in range(12)) + "}",
            extra_search="advisor_options: {shuffle: true}",
        ),
        "grid: shuffle over a space of 1,000,000,000,000 points would list them all (at most 1,000,000)",
    ),
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "cfguser.py").write_text(USER)
    (tmp_path / "cfgraises.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "cfgsyntax.py").write_text("def evaluate(:\n")
    (tmp_path / "cfgexits.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in ("cfguser", "cfgraises", "cfgsyntax", "cfgexits"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(("text", "line"), [pytest.param(t, line, id=i) for i, t, line in BAD_CONFIGS])
def test_a_bad_config_exits_2_with_one_clear_line_before_any_training(project, capsys, text, line):
    path = project / "bad.yaml"
    if text is None:
        path.mkdir()
    else:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["run", str(path), "--output-dir", str(project / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autokd: error: invalid configuration") and "Traceback" not in err
    assert line in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (project / "out" / "trials.jsonl").exists()


def test_the_table_counts():
    assert len(BAD_CONFIGS) == 28  # the count in docs/reliability.md


def test_a_grid_over_a_trillion_points_walks_lazily(tmp_path):
    space = {f"p{i}": list(range(10)) for i in range(12)}
    agent = autokd.AutoDistillation(
        lambda arch: dict(arch),
        {"search": {"search_space": space, "search_algorithm": "grid", "metrics": ["accuracy"], "max_trials": 3}},
    )
    agent.show_progress = False
    agent.train_func = lambda model: model
    agent.eval_func = lambda model: {"accuracy": sum(model.values()) / 100}
    agent.search_loop(tmp_path)
    assert [r.arch for r in agent.search_result] == [
        {**dict.fromkeys(space, 0), "p11": 0},
        {**dict.fromkeys(space, 0), "p11": 1},
        {**dict.fromkeys(space, 0), "p11": 2},
    ]


def test_the_working_directory_comes_last_on_sys_path(project, capsys):
    """A tqdm.py in the working directory is not executed: installed modules win."""
    (project / "tqdm.py").write_text("raise SystemExit('the stray tqdm.py ran')\n")
    (project / "ok.yaml").write_text(config(train="{function: 'cfgfast:train'}"))
    (project / "cfgfast.py").write_text("def train(model):\n    return model\n")
    sys.modules.pop("tqdm", None)
    sys.modules.pop("tqdm.auto", None)
    try:
        assert main(["run", "ok.yaml", "--output-dir", "out"]) == 0
        assert sys.path[-1] == os.getcwd() and sys.path[0] != os.getcwd()
        assert "cfgfast" in sys.modules  # user modules still import
    finally:
        sys.modules.pop("cfgfast", None)
    assert "stray tqdm.py" not in capsys.readouterr().err
