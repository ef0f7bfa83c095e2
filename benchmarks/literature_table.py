"""Issue 16's README table: every registered system of the attention literature, its pass
counts, its ideal work ratio against dense attention at 32K, and the speedup over dense of
the mapper's best mapping on fusemax_cloud and h100_sxm.

- passes: `pass_counts(name)` of the variant's default form (passes over M, or M1/M0).
- ideal @32K: all operations of the variant (every Einsum: the selection, summaries and
  compensation tokens included) over those of dense `fusemax_1pass` at M = P = 32768,
  from `op_counts` (static masks exactly; data-dependent selections at the variant's
  declared density). A variant without a declared density prints the reason.
- speedup: dense latency / variant latency, each the best of a small mapper search
  (`einsim map`, anneal, BUDGET candidates on fusemax_cloud; a random sample of BUDGET
  tilings on h100_sxm) at B=1, H=8, E=F=64, M=P=SEQ (4096 by default: the spatial occupancy of a
  mask without a closed form is an O(M·P) pass per tiling). A refusal prints its reason.

Run: `python benchmarks/literature_table.py [--seq 4096] [--budget 60] [--ideal-seq 32768]`
(a few minutes on two cores). Extra ranks of a variant (R of relative attention, or the
centroids C of a routed variant) take the variant's registry case sizes, R = M.
"""

from __future__ import annotations

import argparse
import sys
import time

import einsim
from einsim import op_counts
from einsim.einsum import EinsimError
from einsim.mapper import search, strategies_of
from einsim.simulator import load_architecture
from einsim.workloads import ATTENTION, pass_counts

#: The systems of issue 16, by the name each is registered under (substring match).
SYSTEMS = (
    ("PowerAttention", "power_attention"),
    ("DuoAttention", "duo_attention"),
    ("RazorAttention", "razor_attention"),
    ("Routing Transformer", "routing"),
    ("HyperAttention", "hyper_attention"),
    ("HiP", "hip"),
    ("FlexPrefill", "flexprefill"),
    ("Landmark attention", "landmark"),
    ("Combiner (fixed)", "combiner"),
    ("MoH", "moh"),
    ("VMoBA", "vmoba"),
    ("BiFormer", "biformer"),
    ("softplus attention", "softplus"),
    ("selective attention", "selective"),
    ("relative attention", "relative"),
    ("Titans (linear memory)", "titans_memory"),
    # the paper's chunk-parallel form (Section 3.2) on mini-batches of 64 tokens
    ("Titans (chunked, b = 64)", "titans_memory", {"form": "blocked", "CHUNK": 64}),
)
_CORE = {"B", "H", "E", "F", "M", "P", "M0"}
_ARCHES = ("fusemax_cloud", "h100_sxm")


def _shape(name: str, seq: int) -> dict[str, int]:
    """B=1, H=8, E=F=64, M=P=seq, plus the variant's extra ranks (relative: R = M)."""
    shape = dict(B=1, H=8, E=64, F=64, M=seq, P=seq)
    cases = ATTENTION.entry(name).meta.get("cases") or ()
    if cases:
        for rank, size in cases[0][1][0].items():
            if rank not in _CORE:
                shape[rank] = seq if rank == "R" else size
    return shape


def _params(name: str, seq: int) -> dict[str, int]:
    """Grid variants need M = P = their grid: VMoBA T x 32 x 32, BiFormer X x Y."""
    if name == "vmoba" and seq % 1024 == 0:
        return dict(T=seq // 1024)
    if name == "biformer" and seq & (seq - 1) == 0:
        x = 2 ** (seq.bit_length() // 2)
        return dict(X=x, Y=seq // x)
    return {}


def _op_total(cascade, shape) -> float:
    """Operations of one batch element, every head (H a rank of the cascade, or H copies)."""
    has_heads = "H" in cascade.ranks
    sizes = {k: v for k, v in shape.items() if k != "B" and (k != "H" or has_heads)}
    total = float(sum(sum(ops.values()) for ops in op_counts(cascade, sizes).values()))
    return total if has_heads else total * shape["H"]


def _short(error: Exception) -> str:
    text = str(error).replace("|", "/")
    return text if len(text) <= 110 else text[:107] + "..."


def _latency(cascade, arch: str, shape, budget: int) -> float:
    architecture = load_architecture(arch)
    strategy = "anneal" if "anneal" in strategies_of(architecture) else "random"
    result = search(cascade, architecture, shape, budget=budget, strategy=strategy)
    if not result.report.valid:
        raise EinsimError("no valid mapping in the budget")
    return result.report.latency_s


def _passes(name: str, form: str | None = None) -> str:
    counts = pass_counts(name)
    if form is None:
        form = "fusemax_1pass" if "fusemax_1pass" in counts else next(iter(counts))
    value = counts[form]
    text = value if isinstance(value, int) else " ".join(f"{k}:{v}" for k, v in value.items())
    return f"{text} ({form})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--ideal-seq", type=int, default=32768)
    parser.add_argument("--budget", type=int, default=60)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    dense = einsim.attention("fusemax_1pass")
    dense_ops = _op_total(dense, _shape("fusemax_1pass", args.ideal_seq))
    dense_latency = {
        arch: _latency(dense, arch, _shape("fusemax_1pass", args.seq), args.budget)
        for arch in _ARCHES
    }
    print(
        f"dense fusemax_1pass at M=P={args.seq}: "
        + ", ".join(f"{a} {t * 1e6:.1f} us" for a, t in dense_latency.items())
    )
    print(
        f"| system | variant | passes | ideal ops / dense @{args.ideal_seq // 1024}K | "
        + " | ".join(f"speedup {a} @{args.seq // 1024}K" for a in _ARCHES)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(_ARCHES))
    notes = []
    for system, key, *extra in SYSTEMS:
        names = [n for n in ATTENTION if key in n and ATTENTION.canonical(n) == n]
        fixed = extra[0] if extra else {}
        for name in names:
            params = {**_params(name, args.seq), **fixed}
            cascade, began = einsim.attention(name, **params), time.perf_counter()
            try:
                at_ideal = einsim.attention(name, **_params(name, args.ideal_seq), **fixed)
                ideal = f"{_op_total(at_ideal, _shape(name, args.ideal_seq)) / dense_ops:.3f}"
            except EinsimError as error:
                ideal = "n/a"
                notes.append(f"{name} ideal: {_short(error)}")
            cells = []
            for arch in _ARCHES:
                try:
                    latency = _latency(cascade, arch, _shape(name, args.seq), args.budget)
                    cells.append(f"{dense_latency[arch] / latency:.2f}x")
                except EinsimError as error:
                    cells.append("refused")
                    notes.append(f"{name} on {arch}: {_short(error)}")
            shown = ", ".join([f"`{name}`"] + [f"{k}={v}" for k, v in fixed.items()])
            passes = _passes(name, fixed.get("form"))
            row = f"| {system} | {shown} | {passes} | {ideal} | {' | '.join(cells)} |"
            print(row, f"({time.perf_counter() - began:.0f} s)", file=sys.stderr)
            print(row)
            sys.stdout.flush()
    for note in notes:
        print(f"- {note}")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
