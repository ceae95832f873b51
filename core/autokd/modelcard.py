"""The model card (``README.md``) written beside each saved student: what it was
distilled from, its architecture, its metrics against the teacher's, the files and how
to load them, the config and command that made it, and the date."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["metrics_table", "model_card"]


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metrics_table(metrics: Mapping[str, Any], teacher: Mapping[str, Any] | None) -> str:
    """A Markdown table: metric, student, teacher and student / teacher."""
    names = [k for k, v in metrics.items() if _scalar(v)]
    if teacher:
        names += [k for k, v in teacher.items() if _scalar(v) and k not in names]
    lines = ["| metric | student | teacher | student / teacher |", "|---|---:|---:|---:|"]
    for name in names:
        mine = metrics.get(name)
        theirs = (teacher or {}).get(name)
        ratio = ""
        if _scalar(mine) and _scalar(theirs) and theirs != 0:
            ratio = f"{mine / theirs:.3f}"
        lines.append(f"| {name} | {_fmt(mine)} | {_fmt(theirs) if theirs is not None else 'not measured'} | {ratio} |")
    return "\n".join(lines)


def _teacher_name(config) -> str:
    model = config.model
    return model.teacher or model.name or "the teacher"


def model_card(info: Mapping[str, Any], context, relative: str) -> str:
    """The card's Markdown for a student saved with ``info`` (``metrics.json``'s content)."""
    import json

    import yaml

    from .config import to_dict
    from .output import today

    config = context.config
    title = f"{config.model.name or 'autokd'} student: trial {info['trial']}"
    if relative == "best":
        title += " (the chosen student)"
    lines = [f"# {title}", ""]
    lines.append(
        f"A {context.framework} student found and trained by autokd's AutoDistillation search, distilled from "
        f"`{_teacher_name(config)}`."
    )
    lines += ["", "## Architecture", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in info["arch"].items()]
    phase = info.get("phase", "search")
    lines += [
        "",
        f"Trial {info['trial']}, phase `{phase}`"
        + (f", budget {_budget_text(info['budget'])}" if "budget" in info else "")
        + ".",
    ]
    lines += ["", "## Metrics", ""]
    lines.append(metrics_table(info["metrics"], info.get("teacher_metrics")))
    onnx = info.get("onnx") or {}
    if onnx.get("int8", {}).get("metrics"):
        lines += ["", "ONNX Runtime int8 copy (`model.int8.onnx`), measured again:", ""]
        lines.append(metrics_table(onnx["int8"]["metrics"], info.get("teacher_metrics")))
    weights = info.get("weights")
    lines += ["", "## Files", ""]
    if weights:
        lines.append(f"Format: {weights.get('format', 'unknown')}.")
        for name in weights.get("files", []):
            lines.append(f"- `{name}`")
        if onnx.get("path"):
            lines.append(
                f"- `{onnx['path']}` (ONNX, opset {onnx.get('opset')}; max |ONNX Runtime - framework| = "
                f"{_fmt(onnx.get('max_abs_diff'))})"
            )
        if onnx.get("int8", {}).get("path"):
            kind = {"static_int8": "static int8, calibrated"}.get(onnx["int8"].get("quantize"), "dynamic int8")
            lines.append(f"- `{onnx['int8']['path']}` ({kind})")
        if weights.get("load"):
            lines += ["", "Load it:", "", "```python", weights["load"], "```"]
    else:
        lines.append("The weights were not saved (see the search's log); `metrics.json` holds the metrics.")
    lines += ["", "## How it was made", ""]
    if context.command:
        lines += ["Command:", "", "```", context.command, "```", ""]
    lines += [
        "Config:",
        "",
        "```yaml",
        yaml.safe_dump(json.loads(json.dumps(to_dict(config), default=str)), sort_keys=False).rstrip(),
        "```",
        "",
    ]
    lines.append(f"Saved {today()}.")
    return "\n".join(lines) + "\n"


def _budget_text(budget: float | list[float]) -> str:
    """``1``, or ``[4, 2.5]`` for one fraction per stage."""
    if isinstance(budget, list | tuple):
        return "[" + ", ".join(f"{b:g}" for b in budget) + "] of each stage's train_steps"
    return f"{budget:g}"
