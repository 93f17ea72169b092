#!/usr/bin/env python3
"""Where one step's GPU time goes: sums an Nsight Compute CSV of kernel durations by kernel name.

Made from a run such as (one profiled step, see DS4_PROFILE_STEP in tests/cuda/cuda_model_sweep.cpp):
    DS4_PROFILE_STEP=1 DS4_CUDA_STEP=fused ncu --profile-from-start off --clock-control none \
        --cache-control none --metrics gpu__time_duration.sum --print-kernel-base function \
        --csv --page raw cuda_model_bench --synth full --sweep ... > step.csv
Usage: scripts/ncu_kernel_table.py step.csv [--top N]
Prints a Markdown table: kernel, launches, total µs, mean µs, share of the summed kernel time.
"""
import argparse
import csv
import io
import sys
from collections import defaultdict


def read_rows(path):
    """The kernel rows of an ncu raw-page CSV (ncu's own log lines before the header are skipped)."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"{path}: no ncu CSV header (a line starting with \"ID\")")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))
    # The second row of a raw page holds the units of each column.
    return [r for r in rows if r.get("ID", "").strip().isdigit()]


def duration_us(row):
    """gpu__time_duration.sum in µs (ncu writes ns, or the unit named in the units row)."""
    value = row.get("gpu__time_duration.sum", "").replace(",", "")
    return float(value) / 1e3 if value else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    rows = read_rows(args.csv)
    if not rows:
        sys.exit(f"{args.csv}: no kernels profiled")
    total = defaultdict(float)
    count = defaultdict(int)
    for r in rows:
        name = r.get("Kernel Name", "?")
        total[name] += duration_us(r)
        count[name] += 1
    whole = sum(total.values())
    print(f"{len(rows)} kernels, {whole / 1e3:.2f} ms summed (each timed alone by ncu)\n")
    print("| kernel | launches | total µs | mean µs | share |")
    print("|---|---:|---:|---:|---:|")
    for name in sorted(total, key=total.get, reverse=True)[: args.top]:
        print(f"| {name} | {count[name]} | {total[name]:.0f} | {total[name] / count[name]:.1f} | "
              f"{100 * total[name] / whole:.1f}% |")


if __name__ == "__main__":
    main()
