"""Loading a config: from a YAML file (read strictly: no duplicate keys, no alias
bombs), a dict of any of the design's layouts, or a config object; each section
structured and checked, every problem reported at once in one :class:`ConfigError`.
And back: :func:`to_dict`, the config as plain data."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import cattrs

from ..errors import ConfigError
from ..output import OutputConfig, check_output
from ..stage_templates import template_problems
from .checks import (
    check_final,
    check_import_string,
    check_metric_names,
    check_search,
    check_train,
)
from .schema import (
    FRAMEWORKS,
    AutoDistillationConfig,
    Config,
    DataConfig,
    DistillationConfig,
    DistillationStagesConfig,
    EvaluationConfig,
    FinalDistillationConfig,
    ModelConfig,
    SearchConfig,
    TrainConfig,
)
from .stages import normalize_stages
from .structuring import join_path, structure_section, type_name

if TYPE_CHECKING:
    from ..plugins import Registry


def _lift_seed_dict(doc: Mapping, problems: list[str]) -> dict:
    """The ``Trainer.autodistillation_config`` dict: ``search`` and
    ``flash_distillation.{knowledge_transfer, regular_distillation}`` at top level."""
    section = dict(doc)
    flash = section.get("flash_distillation")
    if isinstance(flash, Mapping) and ("knowledge_transfer" in flash or "regular_distillation" in flash):
        flash = dict(flash)
        section["flash_distillation"] = flash.pop("knowledge_transfer", None)
        if "regular_distillation" in flash:
            if "regular_distillation" in section:
                problems.append("regular_distillation: given both at top level and under flash_distillation; keep one")
            section["regular_distillation"] = flash.pop("regular_distillation")
        for key in flash:
            section.setdefault("_unknown_flash", []).append(key)
    return section


# Keys that were ``search.<key>`` and are now ``search.advisor_options.<key>``: options of
# one plugin's advisors (autokd-optuna's shared study), not of the core's search.
MOVED_TO_ADVISOR_OPTIONS = ("storage", "study_name")


def _move_advisor_keys(search: Any, path: str, problems: list[str]) -> Any:
    """The search section with the old spelling ``search.storage`` / ``search.study_name``
    moved into ``advisor_options`` (a :class:`DeprecationWarning` names the new key)."""
    if not isinstance(search, Mapping) or not any(key in search for key in MOVED_TO_ADVISOR_OPTIONS):
        return search
    search = dict(search)
    options = search.get("advisor_options")
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        return search  # structuring reports advisor_options; the old keys stay unknown keys
    options = dict(options)
    for key in MOVED_TO_ADVISOR_OPTIONS:
        if key not in search:
            continue
        value = search.pop(key)
        if key in options and options[key] != value:
            problems.append(
                f"{path}.{key}: given both here ({value!r}) and as {path}.advisor_options.{key} "
                f"({options[key]!r}); keep advisor_options.{key}"
            )
            continue
        warnings.warn(
            f"{path}.{key} is deprecated: write it as {path}.advisor_options.{key} (read from there now)",
            DeprecationWarning,
            stacklevel=4,
        )
        if value is not None:
            options[key] = value
    search["advisor_options"] = options
    return search


def _parse_document(doc: Any, source: str | None, plugins: Registry | None) -> Config:
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        raise ConfigError(f"the document must be a mapping of sections, got {type_name(doc)}", source)
    doc = dict(doc)

    # The seed's Python dict form is the auto_distillation section on its own.
    ad_path = "auto_distillation"
    if "auto_distillation" not in doc and "search" in doc:
        doc = {"auto_distillation": doc}
        ad_path = ""

    known = {f.name for f in attrs.fields(Config)} - {"source"}
    for key in doc:
        if key not in known:
            problems.append(f"{key}: unknown section (known sections: {', '.join(sorted(known))})")

    def p(name: str) -> str:
        return join_path(ad_path, name) if ad_path else name

    model = structure_section(doc.get("model") or {}, ModelConfig, "model", problems) or ModelConfig()
    if model.framework not in FRAMEWORKS:
        problems.append(f"model.framework: {model.framework!r} is not one of {list(FRAMEWORKS)}")
        model = attrs.evolve(model, framework="pytorch")

    auto = None
    if doc.get("auto_distillation") is not None:
        raw = doc["auto_distillation"]
        if not isinstance(raw, Mapping):
            problems.append(f"auto_distillation: expected a mapping, got {type_name(raw)}")
        else:
            raw = _lift_seed_dict(raw, problems)
            for key in raw.pop("_unknown_flash", []):
                problems.append(
                    f"{p('flash_distillation')}.{key}: unknown key (known: knowledge_transfer, regular_distillation)"
                )
            for key in raw:
                if key not in ("search", "flash_distillation", "regular_distillation", "final_distillation"):
                    problems.append(
                        f"{p(key)}: unknown key (known keys here: search, flash_distillation, "
                        f"regular_distillation, final_distillation)"
                    )
            search = None
            if raw.get("search") is None:
                problems.append(f"{p('search')}: required but missing")
            else:
                raw_search = _move_advisor_keys(raw["search"], p("search"), problems)
                search = structure_section(raw_search, SearchConfig, p("search"), problems)
                if search is not None:
                    check_search(search, p("search"), problems, plugins.evaluators if plugins is not None else None)
            flash_path = p("flash_distillation") + (".knowledge_transfer" if not ad_path else "")
            flash = _stages_section(raw.get("flash_distillation"), flash_path, problems, flash=True)
            reg_path = p("regular_distillation") if ad_path else "flash_distillation.regular_distillation"
            regular = _stages_section(raw.get("regular_distillation"), reg_path, problems, flash=False)
            final = None
            if raw.get("final_distillation") is not None:
                final = structure_section(
                    raw["final_distillation"], FinalDistillationConfig, p("final_distillation"), problems
                )
                if final is not None:
                    n_stages = len(normalize_stages(flash, flash_path, [])) + len(
                        normalize_stages(regular, reg_path, [])
                    )
                    check_final(final, n_stages, p("final_distillation"), problems)
            if search is not None:
                auto = AutoDistillationConfig(search, flash, regular, final)

    distillation = None
    if doc.get("distillation") is not None:
        distillation = structure_section(doc["distillation"], DistillationConfig, "distillation", problems)
        if distillation is not None:
            check_train(distillation.train, "distillation.train", problems, model.framework)

    train = structure_section(doc.get("train") or {}, TrainConfig, "train", problems) or TrainConfig()
    if "train" in doc:
        check_train(train, "train", problems, model.framework)
    evaluation = (
        structure_section(doc.get("evaluation") or {}, EvaluationConfig, "evaluation", problems) or EvaluationConfig()
    )
    check_import_string(evaluation.function, "evaluation.function", problems)
    if plugins is not None:
        search = auto.search if auto is not None else None
        check_metric_names(search, evaluation, p("search"), problems, plugins.evaluators)
    data = structure_section(doc.get("data") or {}, DataConfig, "data", problems) or DataConfig()
    check_import_string(data.train, "data.train", problems)
    check_import_string(data.eval, "data.eval", problems)
    if model.builder is not None and ":" not in model.builder and not model.builder.isidentifier():
        problems.append(f"model.builder: {model.builder!r} is neither a registered builder name nor 'module:function'")

    output = structure_section(doc.get("output") or {}, OutputConfig, "output", problems) or OutputConfig()
    check_output(output, problems)

    if problems:
        raise ConfigError(problems, source)
    return Config(model, auto, distillation, train, evaluation, data, output=output, source=source)


def load_config(conf: Any, framework: str | None = None, *, plugins: Registry | None = None) -> Config:
    """A :class:`Config` from a YAML path, a dict of any supported layout, or a config
    object. Raises :class:`ConfigError` listing every problem with its path.

    Loading reads no plugin. With ``plugins`` (``autokd.registry()``, loaded by whoever
    runs the config: ``AutoDistillation``, ``autokd run``) the metric names of
    ``constraints`` and of ``evaluation.<metric>`` options are checked too, against the
    metrics a trial computes and the registered evaluators."""
    if isinstance(conf, Config):
        cfg = conf
    elif isinstance(conf, AutoDistillationConfig):
        cfg = Config(auto_distillation=conf)
    elif hasattr(conf, "to_autokd_config"):
        cfg = load_config(conf.to_autokd_config(), plugins=plugins)
    elif isinstance(conf, str | os.PathLike):
        cfg = _parse_document(_read_yaml(os.fspath(conf)), os.fspath(conf), plugins)
    elif isinstance(conf, Mapping):
        cfg = _parse_document(conf, None, plugins)
    else:
        raise ConfigError(f"expected a YAML file path, a dict or a config object, got {type_name(conf)}")
    if framework is not None and framework != cfg.model.framework:
        if framework not in FRAMEWORKS:
            raise ConfigError(f"framework: {framework!r} is not one of {list(FRAMEWORKS)}")
        cfg = attrs.evolve(cfg, model=attrs.evolve(cfg.model, framework=framework))
        from ..distill import optimizer_problems

        problems = optimizer_problems(cfg.train.optimizer, framework, "train.optimizer")
        if cfg.distillation is not None:
            problems += optimizer_problems(cfg.distillation.train.optimizer, framework, "distillation.train.optimizer")
        if problems:
            raise ConfigError(problems, cfg.source)
    return cfg


# A config is a few hundred nodes; a document whose aliases expand past this is an alias
# bomb (#13: a 659-byte file wrote a 197 MB summary.json per trial).
MAX_YAML_NODES = 100_000


def _read_yaml(path: str) -> Any:
    import yaml

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML config file", path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (a binary file?): {exc.reason} at byte {exc.start}", path) from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, path)
        doc = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}", path) from None
    finally:
        loader.dispose()
    if doc is None:
        raise ConfigError("the file is empty", path)
    return doc


def _check_expansion(root: Any, path: str) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_NODES nodes (or
    refer to themselves), counting before anything is built."""
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise ConfigError(
                f"the document expands to more than {MAX_YAML_NODES:,} YAML nodes through its aliases (*name); "
                f"refusing it as an alias bomb: write the values out or use fewer aliases",
                path,
            )
        value = node.value
        if isinstance(value, list):
            for item in value:
                if isinstance(item, tuple):
                    stack.extend(item)
                else:
                    stack.append(item)


def _make_strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """``yaml.safe_load`` that refuses a key given twice in one mapping."""

    def construct_mapping(loader, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first given at line {seen[key] + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


class _LazyLoader:
    """The strict loader class, made on first use (PyYAML is imported lazily)."""

    _cls = None

    def __call__(self, text):
        if _LazyLoader._cls is None:
            _LazyLoader._cls = _make_strict_loader()
        return _LazyLoader._cls(text)


_StrictLoader = _LazyLoader()


def to_dict(config: Config) -> dict:
    """The config as plain data (for records and ``summary.json``)."""
    data = cattrs.Converter().unstructure(config)
    data.pop("source", None)
    ev = data.get("evaluation", {})
    ev.update(ev.pop("metric_options", {}))
    return data


def _stages_section(raw: Any, path: str, problems: list[str], *, flash: bool) -> DistillationStagesConfig | None:
    """A flash or regular distillation section: structured, its stages normalised, and
    (when they are well formed) its ``{i}``/``{t}`` templates checked."""
    if raw is None:
        return None
    section = structure_section(raw, DistillationStagesConfig, path, problems)
    if section is not None:
        stage_problems: list[str] = []
        stages = normalize_stages(section, path, stage_problems)
        problems += stage_problems
        if not stage_problems:
            problems += template_problems(stages, path, flash=flash)
    return section
