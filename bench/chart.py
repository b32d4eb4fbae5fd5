"""A PNG chart of a bench run (matplotlib, installed with the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"direct": "#868e96", "powergate": "#e8590c", "litellm": "#1c7ed6"}


def draw(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no chart")
        return None
    rows: list[tuple[str, dict[str, float]]] = []
    cmp = results.get("compare") or {}
    for key, label in (("hit", "cache hit p50"), ("miss", "miss p50"), ("ttfb", "first byte p50")):
        if key in cmp:
            rows.append((label, {k: cmp[key][k]["p50_ms"] for k in ("direct", "powergate", "litellm")}))
    if "memory" in results and not cmp:
        rows.append(("memory hit p50", {k: results["memory"][k]["p50_ms"] for k in ("direct", "powergate")}))
    if "load" in results:
        rows.append(("autocomplete p95 under load", {k: results["load"][k]["p95_ms"] for k in ("direct", "powergate")}))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    width = 0.27
    for i, (_label, vals) in enumerate(rows):
        for j, name in enumerate(("direct", "powergate", "litellm")):
            if name in vals:
                ax.bar(i + (j - 1) * width, vals[name], width, color=COLORS[name], label=name if i == 0 else None)
                ax.text(i + (j - 1) * width, vals[name], f"{vals[name]:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log scale, lower is better)")
    ax.legend()
    ax.set_title("Latency")
    tp = cmp.get("throughput") if cmp else None
    ax2 = axes[1]
    if tp:
        names = [n for n in ("powergate", "litellm") if tp.get(n)]
        ax2.bar(names, [tp[n] for n in names], color=[COLORS[n] for n in names])
        for i, n in enumerate(names):
            ax2.text(i, tp[n], f"{tp[n]:.0f}", ha="center", va="bottom", fontsize=8)
        ax2.set_title(f"Cached answers/s, {tp['clients']} clients")
    else:
        ax2.axis("off")
    fig.suptitle(f"powergate bench ({results.get('command', '')}, {results.get('at', '')})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
