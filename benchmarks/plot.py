"""results.json -> results.png: time against host count, gpuhub's commands beside Ansible and
the floor (medians, bars from min to max). Run by benchmarks/run.py with benchmarks/.venv's
Python, where matplotlib is installed.

    python benchmarks/plot.py results.json results.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SERIES = (("fab provision", "gpuhub: converged fab provision", "o-"), ("fab plan", "gpuhub: fab plan", "s-"),
          ("fab audit", "gpuhub: fab audit", "^-"), ("ansible", "Ansible: readonly.yml", "D--"),
          ("floor", "bare Fabric: connect + true", "x:"))


def main(source: str, target: str) -> None:
    data = json.load(open(source))
    cases = data["cases"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for prefix, label, style in SERIES:
        points = sorted((c["hosts"], c["summary"]) for cid, c in cases.items() if cid.startswith(prefix + " x"))
        counts = [n for n, _ in points]
        medians = [s["median"] for _, s in points]
        spread = [[s["median"] - s["min"] for _, s in points], [s["max"] - s["median"] for _, s in points]]
        ax.errorbar(counts, medians, yerr=spread, fmt=style, capsize=3, label=label)
    ax.set_xlabel("hosts given to -H (one 8-node simulated cluster)")
    ax.set_ylabel("seconds (median, min-max)")
    ax.set_xticks(sorted({c["hosts"] for c in cases.values() if c["hosts"]}))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"converged runs, {data['meta']['runs']} runs after warm-up ({data['meta']['commit']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
