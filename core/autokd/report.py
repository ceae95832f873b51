"""``autokd report DIR``: everything recomputed from ``trials.jsonl`` (the Pareto front
and the chosen trial by the same rules as the search, so a store written by any version
reads the same), written as ``DIR/report/pareto.png`` and one self-contained
``DIR/report/index.html`` (plots embedded, a sortable trial table, the best student's
model card). The plots need matplotlib (``pip install 'autokd[report]'``)."""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .advisor import Objective
from .config import Constraint
from .errors import AutoKDError, StoreError
from .output import CARD_FILE, chosen, record_budget, record_phase
from .results import ResultStore, TrialRecord

__all__ = ["MATPLOTLIB_HINT", "SearchView", "load_view", "write_report"]

REPORT_DIR = "report"
PLOT_FILE = "pareto.png"
HTML_FILE = "index.html"
MATPLOTLIB_HINT = (
    "autokd report: pip install 'autokd[report]' (matplotlib) to also write report/pareto.png and index.html"
)


@attrs.frozen
class SearchView:
    """A recorded search, recomputed: every record (with its raw JSON, which may carry
    fields this version does not know, such as ``rung``), the objectives, the front and
    the chosen trial."""

    output_dir: str
    records: list
    raw: dict  # trial -> the record's JSON
    objectives: list
    constraints: list
    front: list
    best: TrialRecord | None
    best_feasible: bool

    def rung(self, record: TrialRecord) -> int | None:
        raw = self.raw.get(record.trial, {})
        value = raw.get("rung", (raw.get("extras") or {}).get("rung"))
        return None if value is None else int(value)

    def budget(self, record: TrialRecord) -> float | list[float] | None:
        return record_budget(record)

    def phase(self, record: TrialRecord) -> str:
        raw = self.raw.get(record.trial, {})
        return raw.get("phase") or record_phase(record)


def _raw_records(path: str) -> dict[int, dict]:
    raw = {}
    if not os.path.exists(path):
        return raw
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut off by a crash; ResultStore.load reports it
            if isinstance(data, Mapping) and "trial" in data:
                raw[data["trial"]] = dict(data)
    return raw


def _objectives(summary: Mapping, records: list[TrialRecord]) -> list[Objective]:
    if summary.get("objectives"):
        return [Objective(o["name"], bool(o["higher_is_better"])) for o in summary["objectives"]]
    search = (summary.get("config") or {}).get("auto_distillation", {}).get("search", {})
    from .evaluation import known_direction

    names = (
        search.get("metrics")
        or [
            k
            for k in dict.fromkeys(k for r in records if r.ok for k in r.metrics)
            if _number(records[0].metrics.get(k))
        ][:1]
    )
    directions = search.get("higher_is_better") or [known_direction(n) for n in names]
    return [Objective(n, bool(h)) for n, h in zip(names, directions, strict=False)]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_view(output_dir: str) -> SearchView:
    """The search recorded in ``output_dir``, recomputed from ``trials.jsonl``."""
    store = ResultStore(output_dir)
    if not os.path.isdir(store.output_dir):
        raise StoreError(f"{store.output_dir}: no such output directory")
    records = store.load(repair=False)  # reads only: a run repairs
    if not records:
        raise AutoKDError(f"{store.trials_path}: no trials recorded")
    summary = store.read_summary() or {}
    try:
        objectives = _objectives(summary, records)
        constraints = [Constraint.parse(c) for c in summary.get("constraints", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{store.summary_path}: unreadable objectives or constraints ({exc})") from None
    raw = _raw_records(store.trials_path)
    # rung / budget / phase kept at a record's top level by a version whose TrialRecord
    # has no such fields: the output rules read them from extras.
    records = [_with_raw_fields(r, raw.get(r.trial, {})) for r in records]
    front, best, feasible = chosen(records, objectives, constraints)
    return SearchView(output_dir, records, raw, objectives, constraints, front, best, feasible)


def _with_raw_fields(record: TrialRecord, raw: Mapping) -> TrialRecord:
    extra = {k: raw[k] for k in ("budget", "rung", "phase") if k in raw and k not in record.extras}
    if not extra or hasattr(record, "budget"):
        return record
    return attrs.evolve(record, extras={**record.extras, **extra})


# --- files ------------------------------------------------------------------------------


def write_report(output_dir: str, arch_label: Callable[[dict], str] | None = None) -> list[str] | None:
    """Write ``report/pareto.png`` and ``report/index.html``; None (and nothing written)
    without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    from .report_plot import plot_search

    view = load_view(output_dir)
    directory = os.path.join(output_dir, REPORT_DIR)
    os.makedirs(directory, exist_ok=True)
    png = os.path.join(directory, PLOT_FILE)
    plot_search(view, png, arch_label or default_arch_label)
    page = os.path.join(directory, HTML_FILE)
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(html_page(view, png, arch_label or default_arch_label))
    return [png, page]


def default_arch_label(arch: Mapping) -> str:
    """``4/256/4``: the arch's values in the search space's order (the plot's title names
    the keys)."""
    return "/".join(str(v) for v in arch.values())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return ""
    return str(value)


def html_page(view: SearchView, png_path: str, arch_label: Callable[[dict], str]) -> str:
    """One page, nothing fetched: the plot as a data URI, the trials in a table sortable
    by clicking a heading, and the chosen student's model card."""
    with open(png_path, "rb") as fh:
        png = base64.b64encode(fh.read()).decode("ascii")
    arch_keys = list(dict.fromkeys(k for r in view.records for k in r.arch))
    metric_keys = list(dict.fromkeys(k for r in view.records for k, v in r.metrics.items() if _number(v)))
    front = {r.trial for r in view.front}
    best = view.best.trial if view.best is not None else None
    head = ["trial", *arch_keys, *metric_keys, "status", "phase", "budget", "rung", "time s", "mark"]
    rows = []
    for r in view.records:
        mark = " ".join(m for m, on in (("chosen", r.trial == best), ("front", r.trial in front)) if on)
        cells = [r.trial, *(r.arch.get(k) for k in arch_keys), *(r.metrics.get(k) for k in metric_keys)]
        cells += [r.status if r.ok else f"failed: {r.error or ''}", view.phase(r), view.budget(r), view.rung(r)]
        cells += [round(r.duration_s, 1), mark]
        css = "best" if r.trial == best else ("failed" if not r.ok else ("front" if r.trial in front else ""))
        rows.append(
            f'<tr class="{css}">'
            + "".join(
                f'<td data-v="{html.escape(str(c) if c is not None else "")}">{html.escape(_cell(c))}</td>'
                for c in cells
            )
            + "</tr>"
        )
    card_path = os.path.join(view.output_dir, "best", CARD_FILE)
    if os.path.exists(card_path):
        with open(card_path, encoding="utf-8") as fh:
            card = f"<pre class=card>{html.escape(fh.read())}</pre>"
    else:
        card = "<p>No saved student (<code>best/README.md</code>): the search ran with <code>output.save: none</code> or before students were saved.</p>"
    objectives = ", ".join(
        f"{html.escape(o.name)} ({'higher' if o.higher_is_better else 'lower'} is better)" for o in view.objectives
    )
    chosen = "none" if view.best is None else f"trial {best}: {html.escape(arch_label(view.best.arch))}"
    if view.best is not None and not view.best_feasible and view.constraints:
        chosen += " (no trial meets the constraints)"
    title = html.escape(os.path.basename(os.path.abspath(view.output_dir)))
    return _PAGE.format(
        title=title,
        n=len(view.records),
        failed=sum(1 for r in view.records if not r.ok),
        objectives=objectives,
        chosen=chosen,
        front=", ".join(str(t) for t in sorted(front)),
        png=png,
        head="".join(f"<th>{html.escape(h)}</th>" for h in head),
        rows="\n".join(rows),
        card=card,
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>autokd report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #1f2933; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #cbd2d9; padding: 3px 8px; text-align: right; }}
th {{ background: #e4e7eb; cursor: pointer; }}
tr.best td {{ background: #fde2e1; font-weight: bold; }}
tr.front td {{ background: #e1effe; }}
tr.failed td {{ color: #9aa5b1; }}
pre.card {{ background: #f5f7fa; padding: 1em; white-space: pre-wrap; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>autokd search: {title}</h1>
<p>{n} trials ({failed} failed). Objectives: {objectives}.<br>
Chosen: {chosen}. Pareto front: trials {front}.</p>
<h2>Objectives</h2>
<img alt="Pareto plots" src="data:image/png;base64,{png}">
<h2>Trials</h2>
<p>Click a heading to sort.</p>
<table id="trials"><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
<h2>The chosen student</h2>
{card}
<script>
document.querySelectorAll("#trials th").forEach(function (th, col) {{
  th.addEventListener("click", function () {{
    var body = document.querySelector("#trials tbody");
    var rows = Array.from(body.rows);
    var up = th.dataset.dir !== "up"; th.dataset.dir = up ? "up" : "down";
    rows.sort(function (a, b) {{
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return up ? c : -c;
    }});
    rows.forEach(function (r) {{ body.appendChild(r); }});
  }});
}});
</script>
</body></html>
"""
