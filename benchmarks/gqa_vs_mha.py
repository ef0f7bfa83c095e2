"""Grouped-query vs multi-head attention on fusemax_cloud: one layer of Llama-3-8B prefill.

Llama-3-8B has H = 32 query heads sharing G = 8 K/V groups (E = F = 128). GQA must cost what
32 heads cost in compute, and read K/V once per group (not per head) when the 4 heads of a
group share a buffer tile (the bundled `fusemax_gqa` mapping). Plain multi-head attention is
the per-head `fusemax_1pass` cascade repeated over H (the bundled `fusemax` mapping).

Run: python benchmarks/gqa_vs_mha.py
"""

import itertools
from dataclasses import replace

from einsim import attention, evaluate, load_architecture, load_mapping, workload
from einsim.simulator import bind

MIB = 2**20


def rows(seq_len: int, causal: bool):
    """(name, report) per design at one sequence length, dense or causal (Llama-3 is causal;
    both sides then skip the tiles the mask empties, `skip_empty_tiles`)."""
    arch = load_architecture("fusemax_cloud")
    w = workload("llama3_8b", "fusemax_1pass", seq_len, batch=1)
    gqa_shape = w.sizes | dict(w.outer)  # H and G are ranks of the gqa cascade
    mha_shape = {k: v for k, v in gqa_shape.items() if k != "G"}  # H an outer rank
    gqa = attention("gqa", causal=causal)
    mha = attention("causal") if causal else attention("fusemax")
    fusemax = replace(load_mapping("fusemax"), skip_empty_tiles=causal)
    gqa_mapping = replace(load_mapping("fusemax_gqa"), skip_empty_tiles=causal)
    yield "MHA (fusemax)", evaluate(mha, arch, fusemax, mha_shape)
    yield "GQA (fusemax_gqa)", evaluate(gqa, arch, gqa_mapping, gqa_shape)
    if seq_len == 16384:  # 3 query tiles of 22 x 256 rows instead of fit's 4 of 16 x 256
        split = bind(gqa_mapping, {"attention.GB.P": 22})
        yield "GQA (fusemax_gqa, GB.P=22)", evaluate(gqa, arch, split, gqa_shape)
    yield "GQA (fusemax)", evaluate(gqa, arch, fusemax, gqa_shape)


def main() -> None:
    print(
        f"{'seq':>6} {'design':35} {'compute cycles':>15} {'ratio':>6} {'DRAM MiB':>9} "
        f"{'K+V MiB':>8} {'latency ms':>10}"
    )
    for seq_len, causal in itertools.product((4096, 16384), (False, True)):
        base = None
        for name, report in rows(seq_len, causal):
            name = f"{'causal' if causal else 'dense'} {name}"
            compute = sum(k["compute_cycles"] for k in report.kernels)
            base = base or compute
            kv = (report.dram_bytes_by_tensor["K"] + report.dram_bytes_by_tensor["V"]) / MIB
            print(
                f"{seq_len:>6} {name:35} {compute:>15,.0f} {compute / base:>6.3f} "
                f"{report.dram_bytes / MIB:>9.1f} {kv:>8.1f} {report.latency_s * 1e3:>10.3f}"
            )


if __name__ == "__main__":
    main()
