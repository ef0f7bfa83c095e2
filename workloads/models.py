"""The model zoo: attention shapes of published models, as data with their sources.

`workload(model, variant, seq_len, batch, phase)` pairs a model's attention with an
algorithm and returns the cascade and the shape to evaluate, analyse or cost it with.
`variant` is the algorithm (`naive_2pass`, `stable_3pass`, `online_2pass`,
`fusemax_1pass`); the model decides *which* attention runs (causal, GQA, a window, a
neighborhood), so the FuseMax set and a Llama are asked for the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from einsim.einsum import Cascade, SpecError

from .attention import ATTENTION, attention
from .variants import Form

_PHASES = ("prefill", "decode")


@dataclass(frozen=True, slots=True)
class Model:
    """One model's attention layer.

    Attributes:
        name: registry key. H: query heads. G: key/value groups (G = H without GQA).
        E: embedding per head (E = F). D: model width. S: FFN width. batch: the default
        batch (the FuseMax set uses 64). attention: the registered variant its prefill
        needs ("" = plain softmax attention). params: that variant's parameters.
        decoder: whether the model generates tokens (has a decode phase). grid: the token
        grid (T, X, Y) of a video model, whose product is the sequence length.
        source: where the numbers come from.
    """

    name: str
    H: int
    G: int
    E: int
    D: int
    S: int
    batch: int
    attention: str
    params: tuple[tuple[str, object], ...] = ()
    decoder: bool = False
    grid: tuple[int, ...] = ()
    source: str = ""

    def __post_init__(self):
        for key in ("H", "G", "E", "D", "S", "batch"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"model {self.name!r}: {key} must be a positive integer")
        if self.H % self.G:
            raise SpecError(f"model {self.name!r}: H={self.H} must be a multiple of G={self.G}")


@dataclass(frozen=True, slots=True)
class Workload:
    """What `workload` returns: the cascade, its shape, and what is outside the cascade.

    `shape` binds every rank the cascade uses (M, P, E, F, and H, G for multi-head
    cascades). `outer` holds the independent outer ranks the cascade is repeated over
    (B, and H for a per-head cascade): the whole layer is `outer` copies of the cascade.
    """

    model: Model
    variant: str
    phase: str
    cascade: Cascade = field(compare=False)
    shape: tuple[tuple[str, int], ...]
    outer: tuple[tuple[str, int], ...]

    @property
    def sizes(self) -> dict[str, int]:
        """`shape` as a dict, ready for `cascade.evaluate` or `op_counts`."""
        return dict(self.shape)


def _fusemax(name: str, h: int, e: int, d: int, s: int) -> Model:
    return Model(
        name,
        H=h,
        G=h,
        E=e,
        D=d,
        S=s,
        batch=64,
        attention="",
        source="FuseMax (Nayak et al., MICRO 2024), Table of workloads (reference README)",
    )


MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        # The FuseMax set: non-causal self-attention prefill, B = 64.
        _fusemax("bert_base", 12, 64, 768, 3072),  # Devlin et al. 2019
        _fusemax("trxl", 16, 64, 1024, 4096),  # Transformer-XL, Dai et al. 2019
        _fusemax("t5_small", 8, 64, 512, 2048),  # Raffel et al. 2020
        _fusemax("xlm", 16, 128, 2048, 8192),  # Conneau & Lample 2019
        # Meta Llama 3 model card / config.json: hidden 4096, 32 heads, 8 KV heads, FFN 14336.
        Model(
            "llama3_8b",
            H=32,
            G=8,
            E=128,
            D=4096,
            S=14336,
            batch=1,
            attention="gqa",
            params=(("causal", True),),
            decoder=True,
            source="Llama 3 (Meta 2024), config.json of Meta-Llama-3-8B",
        ),
        # Llama 3 70B: hidden 8192, 64 heads, 8 KV heads, FFN 28672.
        Model(
            "llama3_70b",
            H=64,
            G=8,
            E=128,
            D=8192,
            S=28672,
            batch=1,
            attention="gqa",
            params=(("causal", True),),
            decoder=True,
            source="Llama 3 (Meta 2024), config.json of Meta-Llama-3-70B",
        ),
        # Mistral 7B v0.1: hidden 4096, 32 heads, 8 KV heads, FFN 14336, window 4096.
        Model(
            "mistral_7b",
            H=32,
            G=8,
            E=128,
            D=4096,
            S=14336,
            batch=1,
            attention="gqa",
            params=(("causal", True), ("W", 4096)),
            decoder=True,
            source="Mistral 7B (Jiang et al. 2023), Table 1 (sliding_window 4096)",
        ),
        # GPT-3 175B: d_model 12288, 96 heads of 128, FFN 4 x d_model, causal.
        Model(
            "gpt3_175b",
            H=96,
            G=96,
            E=128,
            D=12288,
            S=49152,
            batch=1,
            attention="causal",
            decoder=True,
            source="Brown et al. 2020, Table 2.1 (GPT-3 175B)",
        ),
        # ViT-L/16: width 1024, 16 heads, MLP 4096; 224 x 224 / 16 x 16 = 196 patches + 1.
        Model(
            "vit_l16",
            H=16,
            G=16,
            E=64,
            D=1024,
            S=4096,
            batch=1,
            attention="",
            source="Dosovitskiy et al. ICLR 2021, Table 1 (ViT-Large, patch 16)",
        ),
        # HunyuanVideo: 3072 wide, 24 heads of 128, MLP ratio 4; a 720p x 129-frame video
        # is a 33 x 45 x 80 latent grid (VAE 4x temporal, 8x spatial, patch 2). The window
        # (18 frames x 24 x 24) is an illustrative sparse setting in the spirit of the GNA
        # paper's video experiments, not a number quoted from it; override with a Model.
        Model(
            "hunyuan_video",
            H=24,
            G=24,
            E=128,
            D=3072,
            S=12288,
            batch=1,
            attention="neighborhood_3d",
            params=(("T", 33), ("X", 45), ("Y", 80), ("KT", 18), ("KW", 24)),
            grid=(33, 45, 80),
            source="HunyuanVideo (Kong et al. 2024); GNA (Hassani et al. 2025), Sec. 5",
        ),
    )
}


def _model(model: str | Model) -> Model:
    if isinstance(model, Model):
        return model
    if model not in MODELS:
        raise SpecError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return MODELS[model]


def workload(
    model: str | Model,
    variant: str,
    seq_len: int,
    batch: int | None = None,
    phase: str = "prefill",
) -> Workload:
    """The cascade and shape of one model's attention, computed with algorithm `variant`.

    Args:
        model: a `MODELS` key or a `Model`.
        variant: the algorithm: naive_2pass, stable_3pass, online_2pass or fusemax_1pass
            (naive_2pass only for plain, unmasked attention).
        seq_len: the sequence length (prefill: M = P; decode: the KV cache length M,
            P = 1). A grid model needs the product of its grid.
        batch: B; the model's default batch when None.
        phase: "prefill" or "decode".

    Raises:
        SpecError: an unknown model, variant or phase; a decode of an encoder; a model
            whose attention the registry lacks.

    Example:
        >>> w = workload("llama3_8b", "fusemax_1pass", 8192, batch=1)
        >>> w.cascade.name, w.sizes["H"], w.sizes["G"], dict(w.outer)
        ('gqa', 32, 8, {'B': 1})
    """
    spec = _model(model)
    if phase not in _PHASES:
        raise SpecError(f"workload: phase must be one of {', '.join(_PHASES)}, got {phase!r}")
    algorithms = (
        "naive_2pass",
        *(f.value for f in (Form.STABLE_3PASS, Form.ONLINE_2PASS, Form.FUSEMAX_1PASS)),
    )
    if variant not in algorithms:
        raise SpecError(
            f"workload: variant must be an algorithm, one of {', '.join(algorithms)}; "
            f"got {variant!r} (the model {spec.name} decides the attention)"
        )
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise SpecError(f"workload: seq_len must be a positive integer, got {seq_len!r}")
    batch = spec.batch if batch is None else batch
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SpecError(f"workload: batch must be a positive integer, got {batch!r}")
    kind = spec.attention
    if kind and kind not in ATTENTION:
        raise SpecError(
            f"workload: model {spec.name} needs attention {kind!r}, which the ATTENTION "
            f"registry lacks (registered: {', '.join(ATTENTION)})"
        )
    params = dict(spec.params)
    if phase == "decode":
        if not spec.decoder:
            raise SpecError(f"workload: {spec.name} is an encoder; it has no decode phase")
        window = params.get("W", 0)
        name, params = "decode", {"W": window, "grouped": spec.G != spec.H or kind == "gqa"}
        queries = 1
    else:
        name, queries = kind, seq_len
        if spec.grid and seq_len != _product(spec.grid):
            raise SpecError(
                f"workload: {spec.name} runs on a {' x '.join(map(str, spec.grid))} token "
                f"grid, so seq_len must be {_product(spec.grid)}, got {seq_len}"
            )
    if not name:
        cascade = attention(variant)
    elif variant == "naive_2pass":
        raise SpecError(
            f"workload: {spec.name} needs {name!r} attention, which has no naive_2pass form; "
            "use stable_3pass, online_2pass or fusemax_1pass"
        )
    else:
        cascade = attention(name, form=variant, **params)
    shape = {"E": spec.E, "F": spec.E, "M": seq_len, "P": queries}
    outer = {"B": batch}
    if "H" in cascade.ranks:
        shape["H"] = spec.H
        if "G" in cascade.ranks:
            shape["G"] = spec.G
    else:
        outer["H"] = spec.H
    return Workload(
        model=spec,
        variant=variant,
        phase=phase,
        cascade=cascade,
        shape=tuple(shape.items()),
        outer=tuple(outer.items()),
    )


def _product(values) -> int:
    total = 1
    for v in values:
        total *= v
    return total
