"""bench/results/scale.png from bench/results/scale.json (bench/scale.py writes both): seconds and peak resident
memory per process against rows, one line per (stage, runner).

    .venv/bin/python bench/scale_plot.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(r["stage"] for r in records))
    colours = {stage: f"C{i}" for i, stage in enumerate(stages)}
    fig, (seconds, memory) = plt.subplots(1, 2, figsize=(11, 4.5))
    for stage in stages:
        for workers, style in ((0, "--"), *((w, "-") for w in sorted({r["workers"] for r in records} - {0}))):
            line = sorted((r for r in records if r["stage"] == stage and r["workers"] == workers), key=lambda r: r["rows"])
            if not line:
                continue
            label = f"{stage}, {f'{workers} workers' if workers else '1 process'}"
            rows = [r["rows"] for r in line]
            seconds.plot(rows, [r["seconds"] for r in line], style, marker="o", color=colours[stage], label=label)
            memory.plot(rows, [r.get("worker_peak_mib", r["peak_mib"]) for r in line], style, marker="o",
                        color=colours[stage], label=label)
    for ax, name in ((seconds, "wall seconds of the stage"), (memory, "peak resident MiB per process")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("table rows")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    seconds.set_title("Seconds against rows (train: a fixed time budget)")
    memory.set_title("Peak memory per process against rows")
    memory.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    results = BENCH / "results"
    plot(json.loads((results / "scale.json").read_text())["records"], results / "scale.png")
    print(f"wrote {results / 'scale.png'}")
