#!/usr/bin/python3
"""Compares strategies with `uniform` across streams (streamdistill-bench output folders).

usage: paired_streams.py OUT_DIR...   (each holds a strategies.csv, one stream each)

For every strategy and budget: the difference from `uniform` is taken per seed (same start
checkpoint, same training order) and averaged within each stream, so each stream counts once.
The table gives the mean over streams, its standard deviation, and t with streams as the
replicates (two-sided 5% test). A deterministic strategy picks the same frames in every seed
of a stream, so only the spread over streams says whether its choice of frames is better.
"""
import csv
import math
import os
import statistics
import sys
from collections import defaultdict

# Two-sided 5% critical values of Student's t by degrees of freedom.
T_CRITICAL = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
              10: 2.23, 11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11,
              18: 2.10, 19: 2.09, 20: 2.09}


def load(folder):
    runs = defaultdict(dict)  # (strategy, budget) -> seed -> (map50, queried)
    with open(os.path.join(folder, "strategies.csv")) as f:
        for row in csv.DictReader(f):
            runs[(row["strategy"], int(row["budget"]))][int(row["seed"])] = (float(row["map50"]), int(row["queried"]))
    return runs


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(folders):
    if not folders:
        sys.exit(__doc__)
    streams = {os.path.basename(os.path.normpath(f)): load(f) for f in folders}
    keys = sorted({k for runs in streams.values() for k in runs if k[0] != "uniform"}, key=lambda k: (k[1], k[0]))
    budgets = sorted({k[1] for runs in streams.values() for k in runs})
    names = list(streams)

    print(f"mAP50 of `uniform` per stream (mean over seeds), then each strategy minus `uniform`, "
          f"paired by seed and averaged within each stream:\n")
    print("| strategy | budget | " + " | ".join(names) + " | mean ± std over streams | t | sent |")
    print("|---|---|" + "---|" * len(names) + "---|---|---|")
    for budget in budgets:
        cells = []
        for name in names:
            u = streams[name].get(("uniform", budget), {})
            cells.append(f"{statistics.mean(v[0] for v in u.values()):.3f}" if u else "-")
        print(f"| uniform | {budget} | " + " | ".join(cells) + " | | | |")
    for strategy, budget in keys:
        per_stream, sent, cells = [], [], []
        for name in names:
            runs = streams[name]
            s, u = runs.get((strategy, budget), {}), runs.get(("uniform", budget), {})
            seeds = sorted(set(s) & set(u))
            if not seeds:
                cells.append("-")
                continue
            d = statistics.mean(s[k][0] - u[k][0] for k in seeds)
            per_stream.append(d)
            sent.append(statistics.mean(s[k][1] for k in seeds))
            cells.append(f"{d:+.3f}")
        if not per_stream:
            continue
        m, sd = mean_std(per_stream)
        n = len(per_stream)
        if n > 1 and sd > 0:
            t = m / (sd / math.sqrt(n))
            bold = abs(t) > T_CRITICAL.get(n - 1, 1.96)
            mean_cell = f"**{m:+.3f} ± {sd:.3f}**" if bold else f"{m:+.3f} ± {sd:.3f}"
            t_cell = f"{t:.1f}"
        else:
            mean_cell, t_cell = f"{m:+.3f}", "-"
        print(f"| {strategy} | {budget} | " + " | ".join(cells) + f" | {mean_cell} | {t_cell} | {statistics.mean(sent):.0f} |")
    print(f"\n{len(names)} streams; **bold**: a t-test over streams finds the mean difference non-zero at 5%.")


if __name__ == "__main__":
    main(sys.argv[1:])
