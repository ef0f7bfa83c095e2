"""Which registered variants run on which target: one sweep from YAML over
`arch: [fusemax_cloud, flat_cloud, h100_sxm, h200, a100_sxm]` x every registered variant at one
shape (each variant given the ranks it has), the mapper's greedy search per point, into one
Parquet dataset; then a Markdown table (ok, lowered operators, or the reason).

Run: python benchmarks/target_support_table.py [--out DIR] [--budget N] [--seq N]
Prints the table and the measured wall time; writes DIR/targets.yaml, DIR/targets.parquet.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import einsim
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import ATTENTION

ARCHS = ("fusemax_cloud", "flat_cloud", "h100_sxm", "h200", "a100_sxm")


def shape_of(variant: str, seq: int) -> dict[str, int]:
    """One shape for every variant: B=1, H=8, E=F=64, M=P=seq, the grid and group ranks
    sized to match; only the ranks the variant's cascade has (others are refused)."""
    # R: relative positions (Music Transformer), at least P
    every = dict(B=1, H=8, G=2, A=16, E=64, F=64, M=seq, P=seq, R=seq, X=32, Y=seq // 32, T=4)
    built = einsim.attention(variant)
    names = cascade_names(built)
    return {k: v for k, v in every.items() if k in names or k in DEFAULT_BATCH}


def spec_text(seq: int, budget: int) -> str:
    cases = []
    for variant in ATTENTION:
        try:
            shape = shape_of(variant, seq)
        except Exception as error:  # a variant that does not build: its own row says why
            print(f"# {variant}: {error}")
            continue
        keys = ", ".join(f"shape.{k}: {v}" for k, v in shape.items())
        cases.append(f"    - {{variant: {variant}, {keys}}}")
    return (
        "name: target_support\n"
        "description: every registered variant on spatial and GPU presets (issue 14)\n"
        f"fixed:\n  mapping: {{search: greedy, budget: {budget}}}\n"
        f"axes:\n  arch: [{', '.join(ARCHS)}]\n  cases:\n" + "\n".join(cases) + "\n"
    )


def cell(row) -> str:
    if row.valid:
        return "ok"
    why = row.error if isinstance(row.error, str) else row.reason
    return "no: " + str(why).split(": ", 1)[-1][:70].replace("|", "/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="target_support", help="output folder")
    parser.add_argument("--budget", type=int, default=60, help="greedy budget per point")
    parser.add_argument("--seq", type=int, default=1024, help="M = P")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "targets.yaml"
    spec.write_text(spec_text(args.seq, args.budget))
    data = out / "targets.parquet"
    start = time.perf_counter()
    einsim.sweep(str(spec), str(data), overwrite=True, chunk_size=4, workers=1)
    wall_s = time.perf_counter() - start
    rows = pd.read_parquet(data)
    table = rows.assign(cell=[cell(r) for r in rows.itertuples()]).pivot_table(
        index="variant", columns="arch", values="cell", aggfunc="first"
    )[list(ARCHS)]
    table = table.reindex([v for v in ATTENTION if v in table.index])
    print(f"| variant | {' | '.join(ARCHS)} |")
    print(f"|---|{'---|' * len(ARCHS)}")
    for variant, cells in table.iterrows():
        print(f"| {variant} | {' | '.join(str(c) for c in cells)} |")
    valid = int(rows.valid.sum())
    print(
        f"\n{len(rows)} points ({valid} valid, {len(rows) - valid} with a reason) in "
        f"{wall_s:.1f} s; dataset {data}"
    )


if __name__ == "__main__":
    main()
