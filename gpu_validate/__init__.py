"""Run GPU mappings for real and check the GPU model's predictions.

`tiles.run_tiles` is the numpy tile-loop executor (the functional reference; no GPU
needed). `kernels.run_gpu` runs the CUDA kernels of `kernels/attention.cu` through CuPy and
`validate.validate` times them against `simulator.gpu` predictions. CuPy is imported lazily
in `backend` only; without it (or without a GPU) those entry points raise
`BackendUnavailable` in one line. Nothing here imports dash or plotly.
"""

from .backend import available
from .tiles import problem_arrays, run_tiles

__all__ = ["available", "problem_arrays", "run_tiles"]
