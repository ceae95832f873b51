"""The main job's outputs beyond the result store: the arch labels of the report's plots
(``autokd report``'s ``report/pareto.png`` and ``index.html``, written by
:func:`autokd.report.write_report`) and the teacher-vs-student table."""

from __future__ import annotations

from collections.abc import Sequence

_SHORT = {
    "num_hidden_layers": "L",
    "hidden_size": "H",
    "num_attention_heads": "A",
    "intermediate_size": "F",
    "embedding_size": "E",
}


def arch_label(arch: dict) -> str:
    """``L2 H384 A12 F384 E112``: layers, hidden size, attention heads, FFN size, word-embedding
    width (factorised)."""
    return " ".join(f"{_SHORT.get(k, k + '=')}{v}" for k, v in arch.items())


def comparison_table(rows: Sequence[tuple[str, dict]]) -> str:
    """Side-by-side table: parameters, latency, fidelity (held-out utterances, general
    English sentences), probe accuracy."""
    header = ["model", "parameters", "latency (ms)", "fidelity", "general fidelity", "probe accuracy"]
    lines = []
    for name, m in rows:
        lines.append(
            [
                name,
                f"{int(m['params']):,}",
                f"{m['latency']:.2f}",
                f"{m['fidelity']:.3f}",
                f"{m['general_fidelity']:.3f}",
                f"{m['probe_accuracy']:.3f}",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in lines]
    return "\n".join(out)
