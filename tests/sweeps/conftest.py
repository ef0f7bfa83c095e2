import copy

import pytest

#: 12 points: 2 sequence lengths x 2 array sizes (4 templates) x 3 buffer tiles (batched).
SMALL = {
    "name": "small",
    "fixed": {"model": "bert_base", "arch": "fusemax_cloud", "mapping": "fusemax"},
    "axes": {
        "seq_len": [1024, 4096],
        "arch.units.2d.cols": [64, 256],
        "mapping.attention.GB.P": [1, 2, 4],
    },
}


@pytest.fixture
def small():
    return copy.deepcopy(SMALL)
