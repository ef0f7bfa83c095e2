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
#: Normalisations a model may name (LayerNorm: mean and variance; RMSNorm: variance only).
NORMS = ("layernorm", "rmsnorm")


@dataclass(frozen=True, slots=True)
class Model:
    """One model: its attention layer and what a whole-model estimate needs.

    Attributes:
        name: registry key. H: query heads. G: key/value groups (G = H without GQA).
        E: embedding per head (E = F; H·E may differ from D, e.g. Gemma-2). D: model
        width. S: FFN width (of one matrix; a gated FFN has three D x S matrices).
        batch: the default batch (the FuseMax set uses 64). attention: the registered
        variant its prefill needs ("" = plain softmax attention). params: that variant's
        parameters. decoder: whether the model generates tokens (has a decode phase).
        grid: the token grid (T, X, Y) of a video model, whose product is the sequence
        length. source: where the numbers come from.
        layers: transformer blocks. vocab: vocabulary (0: no LM head, e.g. ViT, video).
        gated_ffn: SwiGLU/GeGLU (three matrices: gate, up, down) instead of two.
        activation: the FFN's nonlinearity (gelu, silu, relu). experts: FFN experts per
        layer (1: dense); experts_per_token: experts each token is routed to (MoE top-k).
        norm: layernorm or rmsnorm; norms_per_layer: normalisations per block (2 pre-norm;
        Gemma-2 has pre and post norms around both sublayers: 4).
        layer_params: per-layer attention parameters, cycled over the layers (layer i uses
        entry i % len); empty: every layer uses `params` (Gemma-2: local sliding-window
        and global layers alternate).
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
    layers: int = 1
    vocab: int = 0
    gated_ffn: bool = False
    activation: str = "gelu"
    experts: int = 1
    experts_per_token: int = 1
    norm: str = "layernorm"
    norms_per_layer: int = 2
    layer_params: tuple[tuple[tuple[str, object], ...], ...] = ()

    def __post_init__(self):
        for key in ("H", "G", "E", "D", "S", "batch", "layers", "experts", "experts_per_token"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"model {self.name!r}: {key} must be a positive integer")
        if self.H % self.G:
            raise SpecError(f"model {self.name!r}: H={self.H} must be a multiple of G={self.G}")
        if self.experts_per_token > self.experts:
            raise SpecError(
                f"model {self.name!r}: experts_per_token={self.experts_per_token} exceeds "
                f"experts={self.experts}"
            )
        if isinstance(self.vocab, bool) or not isinstance(self.vocab, int) or self.vocab < 0:
            raise SpecError(f"model {self.name!r}: vocab must be a non-negative integer")
        if self.norm not in NORMS:
            raise SpecError(f"model {self.name!r}: norm must be one of {', '.join(NORMS)}")

    def attention_params(self, layer: int = 0) -> dict[str, object]:
        """The attention parameters of layer `layer` (0-based): `layer_params` cycled, else
        `params`.

        Example:
            >>> MODELS["gemma2_9b"].attention_params(0), MODELS["gemma2_9b"].attention_params(1)
            ({'causal': True, 'W': 4096}, {'causal': True})
        """
        if not self.layer_params:
            return dict(self.params)
        return dict(self.layer_params[layer % len(self.layer_params)])


@dataclass(frozen=True, slots=True)
class Workload:
    """What `workload` returns: the cascade, its shape, and what is outside the cascade.

    `shape` binds every rank the cascade uses (M, P, E, F, and H, G for multi-head
    cascades). `outer` holds the independent outer ranks the cascade is repeated over
    (B, and H for a per-head cascade): the whole layer is `outer` copies of the cascade.
    `built_from` is the registry call that builds `cascade`: `attention(name, **params)`
    with (name, params as pairs), what `einsim evaluate --variant NAME --param K=V` takes.
    """

    model: Model
    variant: str
    phase: str
    cascade: Cascade = field(compare=False)
    shape: tuple[tuple[str, int], ...]
    outer: tuple[tuple[str, int], ...]
    built_from: tuple[str, tuple[tuple[str, object], ...]] = ("", ())

    @property
    def sizes(self) -> dict[str, int]:
        """`shape` as a dict, ready for `cascade.evaluate` or `op_counts`."""
        return dict(self.shape)


def _fusemax(name: str, h: int, e: int, d: int, s: int, layers: int, vocab: int) -> Model:
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
        layers=layers,
        vocab=vocab,
    )


_LLAMA = dict(gated_ffn=True, activation="silu", norm="rmsnorm", decoder=True, batch=1)

_VMOBA_GRID = (("T", 21), ("X", 20), ("Y", 32))
#: VMoBA's layer-wise 1D-2D-3D partition cycle on a 21 x 20 x 32 grid (wan2_1_3b_vmoba).
_VMOBA_LAYERS = (
    (*_VMOBA_GRID, ("layout", "1d"), ("BT", 3), ("TOPK", 0)),  # 7 blocks, round(1.26) = 1
    (*_VMOBA_GRID, ("layout", "2d"), ("BX", 4), ("BY", 4), ("TOPK", 6)),  # 40, 7.2 -> 7
    (*_VMOBA_GRID, ("layout", "3d"), ("BT", 7), ("BX", 4), ("BY", 8), ("TOPK", 10)),  # 60
)

MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        # The FuseMax set: non-causal self-attention prefill, B = 64. Layers and vocabulary:
        # BERT-base 12 layers, WordPiece 30,522 (Devlin et al. 2019, Sec. 3; bert-base-uncased
        # config.json).
        _fusemax("bert_base", 12, 64, 768, 3072, layers=12, vocab=30522),
        # Transformer-XL large (WT-103): 18 layers, d_model 1024, 16 heads, d_inner 4096,
        # vocabulary 267,735 (Dai et al. 2019, Sec. 4.1 and Table 1; transfo-xl-wt103 config).
        _fusemax("trxl", 16, 64, 1024, 4096, layers=18, vocab=267735),
        # T5-small: 6 encoder (+ 6 decoder) layers, vocabulary 32,128 (Raffel et al. 2020,
        # Sec. 3.8; t5-small config.json); the FuseMax set prices the encoder.
        _fusemax("t5_small", 8, 64, 512, 2048, layers=6, vocab=32128),
        # XLM (xlm-mlm-en-2048): 12 layers, 16 heads, width 2048, vocabulary 30,145
        # (Conneau & Lample 2019; the model's config.json).
        _fusemax("xlm", 16, 128, 2048, 8192, layers=12, vocab=30145),
        # Llama 2 7B (Touvron et al. 2023, Table 1 and Sec. 2.2; config.json of Llama-2-7b-hf):
        # hidden 4096, 32 layers, 32 heads (no GQA below 34B), FFN 11008, vocabulary 32,000,
        # SwiGLU, RMSNorm; context 4096.
        Model(
            "llama2_7b",
            H=32,
            G=32,
            E=128,
            D=4096,
            S=11008,
            attention="causal",
            source="Llama 2 (Touvron et al. 2023), config.json of Llama-2-7b-hf",
            layers=32,
            vocab=32000,
            **_LLAMA,
        ),
        # Meta Llama 3 model card / config.json: hidden 4096, 32 heads, 8 KV heads, FFN 14336,
        # 32 layers, vocabulary 128,256, SwiGLU (SiLU-gated FFN), RMSNorm.
        Model(
            "llama3_8b",
            H=32,
            G=8,
            E=128,
            D=4096,
            S=14336,
            attention="gqa",
            params=(("causal", True),),
            source="Llama 3 (Meta 2024), config.json of Meta-Llama-3-8B",
            layers=32,
            vocab=128256,
            **_LLAMA,
        ),
        # Llama 3 70B: hidden 8192, 64 heads, 8 KV heads, FFN 28672, 80 layers, vocab 128,256.
        Model(
            "llama3_70b",
            H=64,
            G=8,
            E=128,
            D=8192,
            S=28672,
            attention="gqa",
            params=(("causal", True),),
            source="Llama 3 (Meta 2024), config.json of Meta-Llama-3-70B",
            layers=80,
            vocab=128256,
            **_LLAMA,
        ),
        # Mistral 7B v0.1 (Jiang et al. 2023, Table 1): dim 4096, 32 layers, head_dim 128,
        # hidden_dim 14336, 32 heads, 8 KV heads, window 4096, vocab 32,000; SwiGLU, RMSNorm.
        Model(
            "mistral_7b",
            H=32,
            G=8,
            E=128,
            D=4096,
            S=14336,
            attention="gqa",
            params=(("causal", True), ("W", 4096)),
            source="Mistral 7B (Jiang et al. 2023), Table 1 (sliding_window 4096)",
            layers=32,
            vocab=32000,
            **_LLAMA,
        ),
        # Mixtral 8x7B (Jiang et al. 2024, "Mixtral of Experts", Table 1): dim 4096, 32 layers,
        # head_dim 128, hidden_dim 14336, 32 heads, 8 KV heads, vocab 32,000, 8 experts,
        # top-2 routing; SwiGLU experts, RMSNorm. Full causal attention (config.json of
        # Mixtral-8x7B-v0.1: sliding_window null; context 32K).
        Model(
            "mixtral_8x7b",
            H=32,
            G=8,
            E=128,
            D=4096,
            S=14336,
            attention="gqa",
            params=(("causal", True),),
            source="Mixtral of Experts (Jiang et al. 2024), Table 1",
            layers=32,
            vocab=32000,
            experts=8,
            experts_per_token=2,
            **_LLAMA,
        ),
        # Gemma 2 9B (Gemma Team 2024, "Gemma 2", Table 1; google/gemma-2-9b config.json):
        # d_model 3584, 42 layers, 16 heads, 8 KV heads, head size 256 (H·E = 4096 != D),
        # FFN 14336 per matrix (Table 1 lists 28672 = gate + up), GeGLU, vocabulary 256,000
        # (config.json; Table 1: 256,128), RMSNorm before and after each sublayer (4 per
        # block). Local sliding-window (4096) and global attention alternate, the local
        # layer first (Sec. 2; modeling_gemma2.py: is_sliding = not layer_idx % 2).
        Model(
            "gemma2_9b",
            H=16,
            G=8,
            E=256,
            D=3584,
            S=14336,
            batch=1,
            attention="gqa",
            params=(("causal", True),),
            decoder=True,
            source="Gemma 2 (Gemma Team 2024), Table 1; config.json of gemma-2-9b",
            layers=42,
            vocab=256000,
            gated_ffn=True,
            activation="gelu",
            norm="rmsnorm",
            norms_per_layer=4,
            layer_params=((("causal", True), ("W", 4096)), (("causal", True),)),
        ),
        # DuoAttention (Xiao et al. ICLR 2025) on Llama-3-8B: the mit-han-lab/duo-attention
        # README evaluates Llama-3-8B-Instruct-Gradient-1048k (Llama-3-8B's shapes, above)
        # with "a 50% [retrieval head] ratio for Llama-3-8B (GQA)"; streaming heads keep 64
        # sinks + 256 recent tokens (the paper's setting, the registry default). Prefill
        # runs the `duo_attention` cascade with grouped K/V (first RP% of the query heads
        # full causal, each K/V group read once by its H // G query heads); decode and the
        # KV cache split by K/V group (`einsim.model_estimate`).
        Model(
            "llama3_8b_duo",
            H=32,
            G=8,
            E=128,
            D=4096,
            S=14336,
            attention="duo_attention",
            params=(("RP", 50), ("S", 64), ("W", 256), ("grouped", True)),
            source="DuoAttention (Xiao et al. ICLR 2025), mit-han-lab/duo-attention README "
            "(50% retrieval heads on Llama-3-8B); Llama-3-8B config.json",
            layers=32,
            vocab=128256,
            **_LLAMA,
        ),
        # RazorAttention (Tang et al. ICLR 2025), Algorithm 1 on Llama-3-8B (one of its
        # evaluated models): 15% retrieval heads (echo + induction) keep every key; the others
        # keep N0 = 4 sinks, a buffer of L_h = max(S0, N / C) recent tokens and one
        # compensation token. W = 4000 is S0 (the buffer up to N = C·S0 = 20K tokens); for
        # longer contexts pass a Model with W = N / 5.
        Model(
            "llama3_8b_razor",
            H=32,
            G=8,
            E=128,
            D=4096,
            S=14336,
            attention="razor_attention",
            params=(("RP", 15), ("S", 4), ("W", 4000), ("grouped", True)),
            source="RazorAttention (Tang et al. ICLR 2025), Sec. 4 and Algorithm 1; "
            "Llama-3-8B config.json",
            layers=32,
            vocab=128256,
            **_LLAMA,
        ),
        # VMoBA (Wu et al. 2025) on Wan2.1-T2V-1.3B, the model it trains: 30 layers, width
        # 1536, 12 heads of 128, FFN 8960 (Wan 2.1 README's model table; KwaiVGI/VMoBA
        # src/cal_theo_flops.py: num_layers 30, 12 heads x 128, ffn_dim 8960). Grid and blocks
        # from that script: a 320 x 512 video of 84 frames is a 21 x 20 x 32 latent grid
        # (13,440 tokens); layers cycle 1D / 2D / 3D partitions of 7, 40 and 60 key blocks,
        # each query attending to 18% of them (the script's topk = 0.18 x blocks, its
        # threshold selection's mean): own block + TOPK = round(0.18 N) - 1 others. The
        # script names block counts only; the block shapes are ours: 1D 3 frames; 2D 4 x 4
        # spatial tiles over all frames (5 x 8 = 40); 3D 7 x 4 x 8 cubes (3 x 5 x 4 = 60).
        # Text cross-attention is not priced (as for HunyuanVideo).
        Model(
            "wan2_1_3b_vmoba",
            H=12,
            G=12,
            E=128,
            D=1536,
            S=8960,
            batch=1,
            attention="vmoba",
            params=_VMOBA_LAYERS[0],
            grid=(21, 20, 32),
            source="VMoBA (Wu et al. 2025), KwaiVGI/VMoBA src/cal_theo_flops.py; Wan 2.1 "
            "(Wan Team 2025) model table (1.3B)",
            layers=30,
            layer_params=_VMOBA_LAYERS,
        ),
        # GPT-3 175B: d_model 12288, 96 heads of 128, FFN 4 x d_model, causal, 96 layers
        # (Table 2.1); BPE vocabulary 50,257 (GPT-2's tokenizer, Sec. 2.1).
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
            layers=96,
            vocab=50257,
        ),
        # ViT-L/16: width 1024, 16 heads, MLP 4096, 24 layers; 224 x 224 / 16 x 16 = 196
        # patches + 1. No vocabulary (a classifier head, not priced).
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
            layers=24,
        ),
        # HunyuanVideo: 3072 wide, 24 heads of 128, MLP ratio 4, 20 dual-stream + 40
        # single-stream blocks (Kong et al. 2024, Sec. 4.1: 60 blocks); a 720p x 129-frame
        # video is a 33 x 45 x 80 latent grid (VAE 4x temporal, 8x spatial, patch 2). The
        # window (18 frames x 24 x 24) is an illustrative sparse setting in the spirit of
        # the GNA paper's video experiments, not a number quoted from it; override with a
        # Model.
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
            layers=60,
            norm="layernorm",
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
    layer: int = 0,
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
        layer: which layer (0-based) of a model whose layers differ (`layer_params`:
            Gemma-2's local and global layers); ignored when every layer is alike.

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
    params = spec.attention_params(layer)
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
        built_from = (variant, ())
    elif variant == "naive_2pass":
        raise SpecError(
            f"workload: {spec.name} needs {name!r} attention, which has no naive_2pass form; "
            "use stable_3pass, online_2pass or fusemax_1pass"
        )
    else:
        cascade = attention(name, form=variant, **params)
        built_from = (name, (("form", variant), *params.items()))
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
        built_from=built_from,
    )


def _product(values) -> int:
    total = 1
    for v in values:
        total *= v
    return total
