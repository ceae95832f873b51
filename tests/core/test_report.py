"""``autokd report DIR``: the table, ``report/pareto.png`` and ``report/index.html``,
recomputed from ``trials.jsonl``, on a store with failed trials and rungs and on one
written before students were saved."""

from __future__ import annotations

import importlib.util
import json
import re
import struct

import pytest

from autokd.cli import main

OBJECTIVES = [{"name": "fidelity", "higher_is_better": True}, {"name": "latency", "higher_is_better": False}]


def write_store(directory, records, summary=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary is not None:
        (directory / "summary.json").write_text(json.dumps(summary))


def record(trial, fidelity=None, latency=None, status="ok", error=None, **fields):
    metrics = {} if fidelity is None else {"fidelity": fidelity, "latency": latency, "params": 1000 * (trial + 1)}
    return {
        "trial": trial,
        "arch": {"layers": trial % 3 + 1, "hidden": 64 * (trial + 1)},
        "metrics": metrics,
        "status": status,
        "error": error,
        "duration_s": 1.5,
        "extras": {},
        **fields,
    }


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def trial_cells(page):
    """The trial numbers of the HTML table's rows (first cell of each row)."""
    return [int(m) for m in re.findall(r'<tr class="[a-z]*"><td data-v="(\d+)">', page)]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="autokd[report] not installed")
def test_report_with_failed_trials_and_rungs(tmp_path, capsys):
    out = tmp_path / "search"
    records = [
        record(0, 0.80, 1.0, budget=0.25, rung=0),
        record(1, 0.90, 2.0, budget=0.25, rung=0),
        record(2, None, status="failed", error="RuntimeError: out of memory", budget=0.25, rung=0),
        record(3, 0.97, 9.0, budget=0.25, rung=0),  # best of all, but at a quarter budget
        record(4, 0.85, 1.2, budget=1.0, rung=1),
        record(5, 0.93, 2.5, budget=1.0, rung=1),
        record(6, None, status="failed", error="FloatingPointError: non-finite", budget=1.0, rung=1),
        record(7, 0.80, 3.0, budget=1.0, rung=1),  # dominated
    ]
    # summary.json as an older version wrote it, with a stale front: the report recomputes.
    write_store(
        out, records, {"objectives": OBJECTIVES, "constraints": [], "pareto_front": [{"trial": 3}], "best_trial": 3}
    )
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pareto front: trials [4, 5]" in printed
    assert "best trial 5: {'layers': 3, 'hidden': 384}" in printed
    assert "failed: RuntimeError: out of memory" in printed
    assert f"wrote {out / 'report' / 'pareto.png'}, {out / 'report' / 'index.html'}" in printed

    (width, height), size = png_size(out / "report" / "pareto.png")
    assert 600 <= width <= 3000 and 400 <= height <= 3000
    assert 20_000 < size < 3_000_000

    page = (out / "report" / "index.html").read_text()
    assert trial_cells(page) == list(range(8))  # every trial named, failed ones too
    assert "failed: RuntimeError: out of memory" in page and "failed: FloatingPointError: non-finite" in page
    assert '<tr class="best"><td data-v="5">' in page and '<tr class="front"><td data-v="4">' in page
    assert 'src="data:image/png;base64,' in page and "http" not in page.split("<script>")[0].replace("http-equiv", "")
    assert "No saved student" in page  # no best/README.md in this store


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="autokd[report] not installed")
def test_report_on_a_store_written_before_saved_students(tmp_path, capsys):
    """The layout of every store before #16: no rung, budget or phase; summary.json with
    the front and the best trial; no best/ directory."""
    out = tmp_path / "old"
    records = [
        record(0, 0.8, 1.0),
        record(1, 0.9, 2.0),
        record(2, None, status="failed", error="ValueError: x"),
        record(3, 0.85, 3.0),
    ]
    summary = {
        "objectives": OBJECTIVES,
        "constraints": ["latency <= 1.5"],
        "search_algorithm": "random",
        "seed": 0,
        "trials": 4,
        "failed": 1,
        "pareto_front": [records[0], records[1]],
        "best_trial": 0,
        "best_model_arch": records[0]["arch"],
        "best_metrics": records[0]["metrics"],
        "best_meets_constraints": True,
        "config": {},
    }
    write_store(out, records, summary)
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pareto front: trials [0, 1]" in printed and "best trial 0: {'layers': 1, 'hidden': 64}" in printed
    page = (out / "report" / "index.html").read_text()
    assert trial_cells(page) == [0, 1, 2, 3]
    png_size(out / "report" / "pareto.png")


def test_report_with_one_objective_and_a_model_card(tmp_path):
    pytest.importorskip("matplotlib")
    from autokd.report import write_report

    out = tmp_path / "one"
    write_store(out, [record(0, 0.8, 1.0), record(1, 0.9, 2.0)], {"objectives": OBJECTIVES[:1], "constraints": []})
    (out / "best").mkdir()
    (out / "best" / "README.md").write_text("# tiny student: trial 1 <card>\n")
    png, page = write_report(str(out))
    assert png == str(out / "report" / "pareto.png") and png_size(out / "report" / "pareto.png")[1] > 10_000
    with open(page) as fh:
        assert "# tiny student: trial 1 &lt;card&gt;" in fh.read()


def test_report_without_matplotlib_prints_a_hint(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "s"
    write_store(out, [record(0, 0.8, 1.0)], {"objectives": OBJECTIVES, "constraints": []})
    assert main(["report", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        lines[-1]
        == "autokd report: pip install 'autokd[report]' (matplotlib) to also write report/pareto.png and index.html"
    )
    assert not (out / "report").exists()
