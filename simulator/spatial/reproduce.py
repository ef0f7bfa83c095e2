"""Reproduce the FuseMax paper's attention and end-to-end results through the general model.

Every number comes from `evaluate` on a bundled architecture and mapping spec; the published
table (the artifact's results, bundled as data) is only read to print it beside ours.
End to end (one transformer layer) adds to each attention result the six matrix products of
the layer, each a `gemm` on the 2D array with the `matmul_2d` mapping.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from einsim.einsum import InfeasibleError
from einsim.workloads import MODELS, attention, cascade

from ..targets import load_architecture
from .architecture import Architecture
from .cost import ModelOptions, evaluate
from .mapping import Mapping, load_mapping

#: The FuseMax workloads (MICRO 2024, Table 3): batch, heads, embedding per head.
FUSEMAX_MODELS: dict[str, dict[str, int]] = {
    "BERT": {"B": 64, "H": 12, "E": 64},  # BERT-base
    "TrXL": {"B": 64, "H": 16, "E": 64},  # Transformer-XL
    "T5": {"B": 64, "H": 8, "E": 64},  # T5-small
    "XLM": {"B": 64, "H": 16, "E": 128},
}
#: The same models in the model zoo (`einsim.workloads.MODELS`), which holds their model
#: width D and FFN width S (FuseMax, MICRO 2024, Table 3: BERT 768/3072, TrXL 1024/4096,
#: T5 512/2048, XLM 2048/8192).
FUSEMAX_ZOO = {"BERT": "bert_base", "TrXL": "trxl", "T5": "t5_small", "XLM": "xlm"}
#: The matrix products of one layer (FuseMax artifact, `matmul.py` / `graph.py`), as
#: (name, reduced width K, output width N) in terms of D, S and EH = E·H; each multiplies
#: tokens x K by K x N, tokens = B·P.
LAYER_MATMULS: tuple[tuple[str, str, str], ...] = (
    ("Q", "D", "EH"),
    ("K", "D", "EH"),
    ("V", "D", "EH"),
    ("Z", "EH", "D"),
    ("FFN1", "D", "S"),
    ("FFN2", "S", "D"),
)
MATMUL_MAPPING = "matmul_2d"
SEQ_LENS = (1024, 4096, 16384, 65536, 262144, 1048576)
#: config -> (cascade, architecture, mapping, options)
CONFIGS = {
    "unfused": ("stable_3pass", "flat_cloud", "unfused", ModelOptions()),
    "flat": ("stable_3pass", "flat_cloud", "flat", ModelOptions()),
    "cascade": ("fusemax_1pass", "flat_cloud", "cascade_on_flat", ModelOptions()),
    "arch": ("fusemax_1pass", "fusemax_cloud", "fusemax_serial", ModelOptions()),
    "binding": ("fusemax_1pass", "fusemax_cloud", "fusemax", ModelOptions()),
}
#: FLAT's spill to DRAM starts at this sequence length (its dataflow table).
FLAT_SPILL_FROM = 262144


@functools.cache
def _data(name: str) -> pd.DataFrame:
    """A bundled table, read once (callers must not modify it)."""
    with resources.files("einsim.simulator").joinpath("data", name).open() as handle:
        return pd.read_csv(handle)


@functools.cache
def _mapping(name: str) -> Mapping:
    """A bundled mapping, parsed once (mappings are frozen values)."""
    return load_mapping(name)


def published() -> pd.DataFrame:
    """The artifact's published attention results (BERT and XLM)."""
    return _data("fusemax_attention_published.csv").copy()


def flat_mapping(model: str, seq_len: int):
    """FLAT's mapping at one point: the spec for its regime, with the spill fraction of its
    dataflow table (TrXL and T5 use BERT's rows, as the artifact does)."""
    table = _data("flat_dataflow.csv")
    row = table[(table.model == ("XLM" if model == "XLM" else "BERT")) & (table.seq_len == seq_len)]
    if seq_len >= FLAT_SPILL_FROM:
        return _mapping("flat_spill")
    mapping = _mapping("flat")
    spill = float(row.proportion_spilled.iloc[0]) if len(row) else 0.0
    kernels = tuple(dataclasses.replace(k, spill_fraction=spill) for k in mapping.kernels)
    return dataclasses.replace(mapping, kernels=kernels)


@functools.cache
def _gemm():
    """The `gemm` cascade, parsed once (cascades are frozen values)."""
    return cascade("gemm")


@dataclass(frozen=True, slots=True)
class LayerMatmuls:
    """The six matrix products of one transformer layer (Q, K, V, Z, FFN1, FFN2), summed.

    Attributes:
        latency_s: sum over the six of max(MACs / (rows x cols) / clock, DRAM bytes /
            bandwidth): each product is its own kernel, run one after another (FuseMax
            artifact, `matmul.py`).
        energy_pj: MACs, DRAM and buffer energy of the six.
        dram_bytes: bytes moved to and from DRAM by the six.
        macs: multiply-accumulates of the six.
    """

    latency_s: float
    energy_pj: float
    dram_bytes: float
    macs: float


def layer_matmuls(model: str, seq_len: int, arch: Architecture) -> LayerMatmuls:
    """Evaluate the six matrix products of one layer of `model` at `seq_len` on `arch`.

    Each is the `gemm` cascade (Z[m,n] = A[k,m] * B[k,n]) with the bundled `matmul_2d`
    mapping, M = tokens = B·P and (K, N) from `LAYER_MATMULS` (FuseMax, MICRO 2024,
    end-to-end evaluation; the artifact's `matmul.py`).

    Raises:
        InfeasibleError: a product whose mapping overflows the buffer.

    Example:
        BERT at 1K: 4.638e11 MACs at 65,536 per cycle and 940 MHz, every operand moved once.

        >>> layer = layer_matmuls("BERT", 1024, load_architecture("fusemax_cloud"))
        >>> int(layer.dram_bytes), round(layer.latency_s, 7)
        (1826095104, 0.0075297)
    """
    dims, zoo = FUSEMAX_MODELS[model], MODELS[FUSEMAX_ZOO[model]]
    widths = {"D": zoo.D, "S": zoo.S, "EH": dims["E"] * dims["H"]}
    gemm, mapping = _gemm(), _mapping(MATMUL_MAPPING)
    tokens = dims["B"] * seq_len
    reports = {}
    latency = energy = dram = macs = 0.0
    for name, k, n in LAYER_MATMULS:
        shape = {"K": widths[k], "M": tokens, "N": widths[n]}
        key = (shape["K"], shape["N"])
        where = f"{model} at {seq_len}: matmul {name} ({shape}) does not fit {arch.name}: "
        if key not in reports:  # K and V are copies of Q
            try:
                reports[key] = evaluate(gemm, arch, mapping, shape)
            except InfeasibleError as error:
                raise InfeasibleError(where + str(error)) from None
        report = reports[key]
        if not report.valid:
            raise InfeasibleError(where + "; ".join(report.reasons))
        latency += report.latency_s
        energy += report.energy_pj
        dram += report.dram_bytes
        macs += float(report.per_einsum.ops.sum())
    return LayerMatmuls(latency_s=latency, energy_pj=energy, dram_bytes=dram, macs=macs)


def reproduce(
    models=tuple(FUSEMAX_MODELS),
    seq_lens=SEQ_LENS,
    configs=tuple(CONFIGS),
    end_to_end: bool = False,
):
    """Evaluate every (model, seq_len, config) and join the published values.

    Args:
        models, seq_lens, configs: the points to evaluate (default: the paper's 120).
        end_to_end: also evaluate one whole layer: the attention plus the six matrix
            products of `layer_matmuls`, on the architecture of each configuration (FLAT's
            for unfused, flat and cascade; FuseMax's for arch and binding), as the artifact
            does.

    Returns:
        A DataFrame with model, seq_len, config, latency_s, energy_pj, util_2d, util_1d,
        dram_bytes, energy_pj_artifact_accounting, published_latency_s, published_energy_pj,
        latency_ratio; with `end_to_end`, also matmul_latency_s, matmul_energy_pj,
        matmul_dram_bytes, e2e_latency_s (= latency_s + matmul_latency_s) and e2e_energy_pj.
    """
    rows = []
    archs = {name: load_architecture(name) for name in {c[1] for c in CONFIGS.values()}}
    mappings = {name: _mapping(name) for name in {c[2] for c in CONFIGS.values()}}
    cascades = {name: attention(name) for name in {c[0] for c in CONFIGS.values()}}
    matmuls: dict[tuple[str, int, str], LayerMatmuls] = {}
    for model in models:
        dims = FUSEMAX_MODELS[model]
        for seq_len in seq_lens:
            shape = {**dims, "F": dims["E"], "M": seq_len, "P": seq_len}
            for config in configs:
                cascade, arch, mapping, options = CONFIGS[config]
                spec = flat_mapping(model, seq_len) if config == "flat" else mappings[mapping]
                report = evaluate(cascades[cascade], archs[arch], spec, shape, options)
                # The artifact's +Cascade run lost its exp energy to a misspelled key: show
                # what its accounting gives beside ours.
                quirk = dataclasses.replace(options, drop_exp_energy=config == "cascade")
                artifact = (
                    evaluate(cascades[cascade], archs[arch], spec, shape, quirk)
                    if quirk != options
                    else report
                )
                row = {
                    "model": model,
                    "seq_len": seq_len,
                    "config": config,
                    "latency_s": report.latency_s,
                    "energy_pj": report.energy_pj,
                    "util_2d": report.utilization.get("2d", 0.0),
                    "util_1d": report.utilization.get("1d", 0.0),
                    "dram_bytes": report.dram_bytes,
                    "valid": report.valid,
                    "energy_pj_artifact_accounting": artifact.energy_pj,
                }
                if end_to_end:
                    key = (model, seq_len, arch)
                    if key not in matmuls:
                        matmuls[key] = layer_matmuls(model, seq_len, archs[arch])
                    layer = matmuls[key]
                    row |= {
                        "matmul_latency_s": layer.latency_s,
                        "matmul_energy_pj": layer.energy_pj,
                        "matmul_dram_bytes": layer.dram_bytes,
                        "e2e_latency_s": report.latency_s + layer.latency_s,
                        "e2e_energy_pj": report.energy_pj + layer.energy_pj,
                    }
                rows.append(row)
    ours = pd.DataFrame(rows)
    paper = published().rename(
        columns={
            "latency_s": "published_latency_s",
            "energy_pJ": "published_energy_pj",
            "dram_bytes": "published_dram_bytes",
            "util_2d": "published_util_2d",
            "util_1d": "published_util_1d",
        }
    )
    table = ours.merge(paper, on=["model", "seq_len", "config"], how="left")
    table["latency_ratio"] = table.latency_s / table.published_latency_s
    return table


def point_ratios(table: pd.DataFrame, end_to_end: bool = False) -> pd.DataFrame:
    """FLAT/FuseMax latency and FuseMax/FLAT energy per (model, seq_len) point.

    Args:
        table: what `reproduce` returns (with `end_to_end`, it must come from
            `reproduce(..., end_to_end=True)`: the e2e_ columns are compared).

    Returns:
        A DataFrame indexed by (model, seq_len) with speedup_vs_flat and energy_vs_flat.
    """
    latency, energy = (
        ("e2e_latency_s", "e2e_energy_pj") if end_to_end else ("latency_s", "energy_pj")
    )
    wide = table.pivot_table(index=["model", "seq_len"], columns="config", values=[latency, energy])
    return pd.DataFrame(
        {
            "speedup_vs_flat": wide[latency]["flat"] / wide[latency]["binding"],
            "energy_vs_flat": wide[energy]["binding"] / wide[energy]["flat"],
        }
    )


def headline(table: pd.DataFrame, end_to_end: bool = False) -> dict[str, float]:
    """Mean over (model, seq_len) of FLAT/FuseMax latency and FuseMax/FLAT energy ratios.

    The paper's headline (FuseMax, MICRO 2024, abstract): for attention 6.7x faster than
    FLAT at 79% of its energy; end to end (one layer: `end_to_end`) 5.3x at 83%. Each is
    the mean of the per-point ratios of `point_ratios`.
    """
    ratios = point_ratios(table, end_to_end)
    return {name: float(column.mean()) for name, column in ratios.items()}


#: The Pareto study's array sizes (FuseMax, MICRO 2024, Fig. 12): PE_dim x PE_dim 2D arrays.
PARETO_PE_DIMS = (16, 32, 64, 128, 256, 512)
PARETO_SEQ_LEN = 262144
#: The buffer starts at PE_dim x E x this many bytes and doubles while the point is
#: memory-bound (the artifact's rule), at most `PARETO_MAX_DOUBLINGS` times.
PARETO_BUFFER_BYTES_PER_PE_E = 16
PARETO_MAX_DOUBLINGS = 12


def published_pareto() -> pd.DataFrame:
    """The artifact's published Pareto points (latency and total area at 256K tokens)."""
    return _data("fusemax_pareto_published.csv").copy()


def pareto_architecture(pe_dim: int, buffer_bytes: int, base: str = "fusemax_cloud"):
    """FuseMax's architecture scaled as in the Pareto study: a PE_dim x PE_dim 2D array,
    PE_dim 1D lanes and a global buffer of `buffer_bytes`."""
    return load_architecture(
        base,
        {
            "units.2d.rows": pe_dim,
            "units.2d.cols": pe_dim,
            "units.1d.lanes": pe_dim,
            "levels.GB.capacity_bytes": buffer_bytes,
        },
    )


def pareto(
    models=tuple(FUSEMAX_MODELS),
    pe_dims=PARETO_PE_DIMS,
    seq_len: int = PARETO_SEQ_LEN,
) -> pd.DataFrame:
    """FuseMax's area-latency trade-off as the array grows (MICRO 2024, Fig. 12).

    For each model and PE_dim: a PE_dim x PE_dim 2D array, PE_dim 1D lanes, the key tile
    M0 = PE_dim, and a global buffer of PE_dim x E x 16 bytes, doubled while the point is
    memory-bound (DRAM time above compute time), as the paper's artifact does. Every number
    comes from `evaluate` with the bundled `fusemax` mapping and from `area_by_component_mm2`.

    Returns:
        One row per (model, pe_dim): buffer_bytes, latency_s, compute_s, memory_s,
        dram_bytes, util_2d, util_1d, area_mm2, area_<component>_mm2, and the published
        latency and area where the artifact gives them.
    """
    from .area import area_by_component_mm2

    mapping = _mapping("fusemax")
    rows = []
    for model in models:
        dims = FUSEMAX_MODELS[model]
        shape = {**dims, "F": dims["E"], "M": seq_len, "P": seq_len}
        for pe_dim in pe_dims:
            cascade_ = attention("fusemax_1pass", M0=pe_dim)
            buffer_bytes = pe_dim * dims["E"] * PARETO_BUFFER_BYTES_PER_PE_E
            for _ in range(PARETO_MAX_DOUBLINGS + 1):
                arch = pareto_architecture(pe_dim, buffer_bytes)
                report = evaluate(cascade_, arch, mapping, shape)
                compute = sum(k["compute_cycles"] for k in report.kernels) / arch.clock_hz
                memory = report.dram_bytes / (
                    arch.levels[0].bandwidth_bytes_per_cycle * arch.clock_hz
                )
                if report.valid and memory <= compute:
                    break
                buffer_bytes *= 2
            areas = area_by_component_mm2(arch)
            rows.append(
                {
                    "model": model,
                    "pe_dim": pe_dim,
                    "seq_len": seq_len,
                    "buffer_bytes": buffer_bytes,
                    "valid": report.valid,
                    "latency_s": report.latency_s,
                    "compute_s": compute,
                    "memory_s": memory,
                    "dram_bytes": report.dram_bytes,
                    "util_2d": report.utilization.get("2d", 0.0),
                    "util_1d": report.utilization.get("1d", 0.0),
                    "area_mm2": float(sum(areas.values())),
                    **{f"area_{name}_mm2": float(value) for name, value in areas.items()},
                }
            )
    table = pd.DataFrame(rows)
    paper = published_pareto()[["model", "pe_dim", "seq_len", "latency_s", "area_mm2"]]
    paper = paper.rename(
        columns={"latency_s": "published_latency_s", "area_mm2": "published_area_mm2"}
    )
    return table.merge(paper, on=["model", "pe_dim", "seq_len"], how="left")


def iso_area(archs=("fusemax_cloud", "flat_cloud")) -> pd.DataFrame:
    """Area by component of FuseMax's and FLAT's accelerators side by side (mm^2), with a
    total row: the check of the paper's iso-area comparison."""
    from .area import area_by_component_mm2

    columns = {name: area_by_component_mm2(load_architecture(name)) for name in archs}
    table = pd.DataFrame(columns).fillna(0.0).astype(float)
    table.loc["total"] = table.sum()
    table.index.name = "component"
    return table
