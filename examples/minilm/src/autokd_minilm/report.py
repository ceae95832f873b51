"""The main job's outputs beyond the result store: the Pareto-front plot and the
teacher-vs-student table."""

from __future__ import annotations

from collections.abc import Sequence

from autokd import TrialRecord


def plot_pareto(records: Sequence[TrialRecord], front: Sequence[TrialRecord], best: TrialRecord | None, path: str, latency_label: str) -> None:
    """Fidelity against latency: every successful trial, the front, the chosen arch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.ok]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([r.metrics["latency"] for r in ok], [r.metrics["fidelity"] for r in ok], c="#9aa5b1", s=28, label="trial", zorder=2)
    for r in ok:
        ax.annotate(f"{r.trial}: {arch_label(r.arch)}", (r.metrics["latency"], r.metrics["fidelity"]), textcoords="offset points", xytext=(4, 3), fontsize=7, color="#52606d")
    pts = sorted((r.metrics["latency"], r.metrics["fidelity"]) for r in front)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color="#2f80ed", ms=6, lw=1.5, label="Pareto front", zorder=3)
    if best is not None:
        ax.scatter([best.metrics["latency"]], [best.metrics["fidelity"]], marker="*", s=260, c="#eb5757", edgecolors="black", linewidths=0.6, label=f"chosen (trial {best.trial})", zorder=4)
    failed = len(records) - len(ok)
    title = f"all-MiniLM-L6-v2 students: {len(ok)} trials" + (f" ({failed} failed, not drawn)" if failed else "")
    ax.set_title(title + "\nL layers, H hidden size, A attention heads, F feed-forward size", fontsize=9)
    ax.set_xlabel(latency_label)
    ax.set_ylabel("fidelity: mean cosine to teacher embedding (held-out)")
    ax.margins(x=0.18, y=0.08)  # room for the labels
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


_SHORT = {"num_hidden_layers": "L", "hidden_size": "H", "num_attention_heads": "A", "intermediate_size": "F"}


def arch_label(arch: dict) -> str:
    """``L3 H144 A12 F384``: layers, hidden size, attention heads, FFN size."""
    return " ".join(f"{_SHORT.get(k, k + '=')}{v}" for k, v in arch.items())


def comparison_table(rows: Sequence[tuple[str, dict]]) -> str:
    """Side-by-side table: parameters, latency, fidelity (held-out utterances, general
    English sentences), probe accuracy."""
    header = ["model", "parameters", "latency (ms)", "fidelity", "general fidelity", "probe accuracy"]
    lines = []
    for name, m in rows:
        lines.append([
            name,
            f"{int(m['params']):,}",
            f"{m['latency']:.2f}",
            f"{m['fidelity']:.3f}",
            f"{m['general_fidelity']:.3f}",
            f"{m['probe_accuracy']:.3f}",
        ])
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in lines]
    return "\n".join(out)
