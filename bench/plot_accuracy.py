"""Draw the accuracy plots from bench/results/accuracy.json (needs matplotlib).

    bench/.cache/peers-venv/bin/python bench/plot_accuracy.py RESULTS.json FOLDER

Writes FOLDER/accuracy-recall-fpr.png (malicious recall against false-positive rate, one
panel per corpus, one point per tool) and FOLDER/accuracy-time-per-gb.png (seconds per GB
scanned, per-file runs added up, per corpus and tool, log scale). Small PNGs (< 200 KB).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"malhug": "#1b7837", "picklescan": "#2166ac", "modelscan": "#b2182b", "fickling": "#e08214",
           "modelaudit": "#762a83", "guarddog": "#8c510a", "bandit": "#01665e"}


def recall_vs_fpr(result: dict, out: Path) -> None:
    corpora = [c for c, d in result["corpora"].items() if d["malicious"] or d["benign"]]
    fig, axes = plt.subplots(1, len(corpora), figsize=(3.2 * len(corpora), 3.3), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        data = result["corpora"][corpus]
        for tool in data["tools"]:
            s = data["scores"][tool]
            recall = s["recall"] if s["recall"] is not None else 0.0
            fpr = s["false_positive_rate"] if s["false_positive_rate"] is not None else 0.0
            ax.scatter([100 * fpr], [100 * recall], s=45, color=COLOURS.get(tool, "grey"), label=tool, zorder=3)
            ax.annotate(tool, (100 * fpr, 100 * recall), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_title(f"{corpus} ({data['malicious']} mal., {data['benign']} ben.)", fontsize=8)
        ax.set_xlabel("false-positive rate %", fontsize=8)
        ax.set_xlim(-5, 105)
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("malicious recall %", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def time_per_gb(result: dict, out: Path) -> None:
    corpora = list(result["corpora"])
    tools = []
    for corpus in corpora:
        tools += [t for t in result["corpora"][corpus]["tools"] if t not in tools]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    width = 0.8 / max(1, len(tools))
    for i, tool in enumerate(tools):
        xs, ys = [], []
        for j, corpus in enumerate(corpora):
            s = result["corpora"][corpus]["scores"].get(tool)
            if s and s.get("seconds_per_gb"):
                xs.append(j + i * width)
                ys.append(s["seconds_per_gb"])
        ax.bar(xs, ys, width, color=COLOURS.get(tool, "grey"), label=tool)
    ax.set_xticks([j + width * (len(tools) - 1) / 2 for j in range(len(corpora))])
    ax.set_xticklabels([f"{c}\n{result['corpora'][c]['bytes'] / 1e6:.0f} MB" for c in corpora], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per GB (per-file runs)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, ncol=4)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    result = json.loads(Path(argv[0]).read_text())
    folder = Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    recall_vs_fpr(result, folder / "accuracy-recall-fpr.png")
    time_per_gb(result, folder / "accuracy-time-per-gb.png")
    for name in ("accuracy-recall-fpr.png", "accuracy-time-per-gb.png"):
        print(f"written: {folder / name} ({(folder / name).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
