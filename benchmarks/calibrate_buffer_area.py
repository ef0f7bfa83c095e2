"""Fit the global buffer's area per byte: the one area constant the FuseMax paper never published.

Every PE component's area is a published 45 nm Accelergy figure (in the architecture YAML); the
artifact sized its buffers with CACTI at run time and did not record the result. This script
fits one density (um^2 per byte) by least squares on relative error:

    published_area ~= area(buffer density 0) + buffer_bytes x density

over the published Pareto points (BERT at 256K tokens, `simulator/data/
fusemax_pareto_published.csv`), each point's architecture and buffer built by
`simulator.spatial.reproduce.pareto` (PE_dim x E x 16 bytes, doubled while memory-bound). The same
density (one technology) is written to the marked `area_um2_per_byte` line of fusemax_cloud
and flat_cloud.

Run: python benchmarks/calibrate_buffer_area.py [--write]
"""

import sys

from calibrate_buffer_energy import rewrite_marked  # this folder is on sys.path when run

from einsim.simulator.spatial.reproduce import pareto, published_pareto

ARCHS = ("fusemax_cloud", "flat_cloud")
MARK = "# calibrated: benchmarks/calibrate_buffer_area.py"


def fit() -> tuple[float, list[tuple[int, float, float, float]]]:
    """(density in um^2 per byte, [(pe_dim, buffer_bytes, area without buffer, published)])."""
    paper = published_pareto()
    table = pareto(models=tuple(paper.model.unique()), pe_dims=tuple(paper.pe_dim))
    table = table.dropna(subset=["published_area_mm2"])
    points = []
    numerator = denominator = 0.0
    for row in table.itertuples():
        without = row.area_mm2 - getattr(row, "area_GB_mm2", 0.0)
        published = row.published_area_mm2
        mm2_per_byte = row.buffer_bytes / published
        # Minimise sum(((without + bytes*d - published) / published)^2) over d.
        numerator += mm2_per_byte * (published - without) / published
        denominator += mm2_per_byte**2
        points.append((row.pe_dim, row.buffer_bytes, without, published))
    return numerator / denominator * 1e6, points


if __name__ == "__main__":
    density, points = fit()
    print(f"buffer density: {density:.4f} um^2 per byte ({density * 8:.4f} per bit)")
    for pe_dim, buffer_bytes, without, published in points:
        modelled = without + buffer_bytes * density / 1e6
        print(
            f"  PE_dim {pe_dim:4d}: buffer {buffer_bytes:>9,} B, arrays {without:9.3f} mm^2, "
            f"total {modelled:9.3f} mm^2 vs published {published:9.3f} "
            f"({(modelled / published - 1) * 100:+.2f}%)"
        )
    if "--write" in sys.argv:
        for arch_name in ARCHS:
            rewrite_marked(arch_name, MARK, density)
