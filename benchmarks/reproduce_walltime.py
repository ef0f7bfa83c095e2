"""Wall time of the whole FuseMax reproduction (4 models x 6 lengths x 5 configurations).

The paper's artifact takes about 9 hours for the same table (its README); target: < 2 s.
Run: python benchmarks/reproduce_walltime.py
"""

import time

from einsim.simulator.spatial.reproduce import reproduce

ARTIFACT_S = 9 * 3600

if __name__ == "__main__":
    reproduce(models=("BERT",), seq_lens=(1024,))  # warm imports and caches
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        table = reproduce()
        runs.append(time.perf_counter() - start)
    best = min(runs)
    print(
        f"points: {len(table)}  best of 3: {best:.3f} s  target: < 2 s  "
        f"artifact: ~{ARTIFACT_S} s  ratio artifact/einsim: {ARTIFACT_S / best:,.0f}x"
    )
