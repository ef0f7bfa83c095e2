"""Direct numpy formulas of every attention variant, written independently of the cascades.

`direct(name, inputs, **params)` computes AV from the variant's textbook formula (dense
masks, `np.einsum`, explicit loops for the neighborhood windows and the MoBA top-k); the
tests check every registered cascade, in every form, against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from einsim.einsum import Cascade, Registry, SpecError, resolve_shape, tensor_shapes

from .attention import ATTENTION, attention, parameters

DIRECT: Registry = Registry("direct formula")


#: Queries per block in `_softmax_av`: a block's M x block temporaries stay in cache.
QUERY_BLOCK = 256


def _softmax_av(scores: np.ndarray, keep, v: np.ndarray, extra=None) -> np.ndarray:
    """softmax over keys (axis -2 of scores[..., m, p]) of the kept scores, times v[..., f, m].

    A query with no kept key gets 0 (the softmax over an empty set contributes nothing), as
    every form of the cascades does (see `einsim.workloads.variants`). `extra`: one more
    token per query, (score[p], value[f, p]), left out where its score is -inf. Computed
    in blocks of QUERY_BLOCK queries (the same operations per query)."""
    keep = np.broadcast_to(keep, scores.shape)
    n = scores.shape[-1]
    lead = np.broadcast_shapes(v.shape[:-2], scores.shape[:-2])
    out = np.empty((*lead, v.shape[-2], n))
    for p0 in range(0, n, QUERY_BLOCK):
        block = slice(p0, min(p0 + QUERY_BLOCK, n))
        w = np.where(keep[..., block], scores[..., block], -np.inf)
        top = w.max(axis=-2, keepdims=True)
        if extra is not None:
            top = np.maximum(top, extra[0][..., None, block])
        top = np.where(np.isfinite(top), top, 0.0)
        w -= top
        np.exp(w, out=w)  # exp(-inf) = 0 where a key is not kept
        total = w.sum(axis=-2, keepdims=True)
        av = _product(v, w)
        if extra is not None:
            e = np.exp(extra[0][..., None, block] - top)
            total = total + e
            av += extra[1][..., block] * e
        out[..., block] = av / np.where(total > 0, total, 1.0)
    return out


def _top_blocks(gate: np.ndarray, eligible: np.ndarray, top: int) -> np.ndarray:
    """chosen[p, n]: the `top` eligible blocks of highest gate[p, n] per query (all when
    fewer; ties: the lower block first, as a stable sort)."""
    order = np.argsort(np.where(eligible, -gate, np.inf), axis=1, kind="stable")[:, :top]
    chosen = np.zeros(gate.shape, dtype=bool)
    np.put_along_axis(chosen, order, True, axis=1)
    return chosen & eligible


def _scores(q, k, out=None):
    """K^T Q: [m, p], or per head [h, m, p] when q and k carry a leading head axis; into
    `out` when given."""
    return _product(np.swapaxes(k, -1, -2), q, out)


#: A product with rows, columns or a contracted size this small (E = 2, F = 3 in the
#: checks) runs on np.einsum's own loop: BLAS is no faster on it and its threads spin.
SKINNY = 8


def _product(a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
    """a @ b (stacks broadcast): BLAS, or np.einsum when a side is at most SKINNY."""
    if min(a.shape[-2], a.shape[-1], b.shape[-1]) <= SKINNY:
        return np.einsum("...ij,...jk->...ik", a, b, out=out)
    return np.matmul(a, b, out=out)


def _positions(m: int, p: int):
    return np.arange(m)[:, None], np.arange(p)[None, :]


def _plain(inputs, params):
    return _softmax_av(_scores(inputs["Q"], inputs["K"]), True, inputs["V"])


for _name in ("naive_2pass", "stable_3pass", "online_2pass", "fusemax_1pass", "cross"):
    DIRECT.register(_name)(_plain)


@DIRECT.register("causal")
def _causal(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    return _softmax_av(_scores(q, k), m <= p, v)


@DIRECT.register("sliding_window")
def _sliding_window(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    w = params["W"]
    keep = (m <= p) & (p - m < w) if params["causal"] else np.abs(p - m) <= w / 2
    return _softmax_av(_scores(q, k), keep, v)


@DIRECT.register("sinks_window")
def _sinks_window(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    keep = (m <= p) & ((m < params["S"]) | (p - m < params["W"]))
    return _softmax_av(_scores(q, k), keep, v)


def _window_1d(length: int, kernel: int, dilation: int, stride: int) -> np.ndarray:
    """keep[j, i] for one axis: NATTEN's window with dilation, GNA's stride groups."""
    keep = np.zeros((length, length), dtype=bool)
    for i in range(length):
        group = list(range(i % dilation, length, dilation))  # the query's dilation group
        index = i // dilation
        leader = min(index // stride * stride + stride // 2, len(group) - 1)
        start = leader - kernel // 2
        start = max(0, min(start, len(group) - kernel))  # shift inward at the borders
        keep[group[start : start + kernel], i] = True
    return keep


def _neighborhood(inputs, grid, kernels, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    if k.shape[-1] != math.prod(grid) or q.shape[-1] != math.prod(grid):
        raise SpecError(f"direct: neighborhood needs M = P = {math.prod(grid)} for grid {grid}")
    keep = np.ones((math.prod(grid),) * 2, dtype=bool)
    coords = np.unravel_index(np.arange(math.prod(grid)), grid)
    for axis, (length, kernel) in enumerate(zip(grid, kernels, strict=True)):
        axis_keep = _window_1d(length, kernel, params["DIL"], params["STRIDE"])
        keep &= axis_keep[coords[axis][:, None], coords[axis][None, :]]
    return _softmax_av(_scores(q, k), keep, v)


@DIRECT.register("neighborhood_2d")
def _neighborhood_2d(inputs, params):
    grid = (params["X"], params["Y"])
    return _neighborhood(inputs, grid, (params["KW"],) * 2, params)


@DIRECT.register("neighborhood_3d")
def _neighborhood_3d(inputs, params):
    grid = (params["T"], params["X"], params["Y"])
    return _neighborhood(inputs, grid, (params["KT"], params["KW"], params["KW"]), params)


@DIRECT.register("block_topk")
def _block_topk(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    size, top, causal = params["BS"], params["TOPK"], params["causal"]
    n_keys, n_queries = k.shape[1], q.shape[1]
    n_blocks = -(-n_keys // size)
    block = np.arange(n_keys) // size  # each key's block
    means = np.stack([k[:, block == n].mean(axis=1) for n in range(n_blocks)], axis=1)  # [e, n]
    gate = q.T @ means  # [p, n]
    own = np.arange(n_queries) // size
    blocks = np.arange(n_blocks)[None, :]
    others = blocks < own[:, None] if causal else blocks != own[:, None]
    chosen = _top_blocks(gate, others, top)  # the TOPK best other blocks per query
    chosen[own < n_blocks, own[own < n_blocks]] = True  # the query's own block
    keep = chosen[:, block].T  # [m, p]
    if causal:
        m, p = _positions(n_keys, n_queries)
        keep &= m <= p
    return _softmax_av(_scores(q, k), keep, v)


def _expand_groups(kv: np.ndarray, heads: int) -> np.ndarray:
    groups = kv.shape[0]
    if heads % groups:
        raise SpecError(f"direct: H={heads} must be a multiple of G={groups}")
    return kv[np.arange(heads) // (heads // groups)]


def _causal_window(m, p, params):
    keep = m <= p
    return keep & (p - m < params["W"]) if params.get("W") else keep


@DIRECT.register("gqa")
def _gqa(inputs, params):
    q = inputs["Q"]
    k, v = (_expand_groups(inputs[t], q.shape[0]) for t in ("K", "V"))
    m, p = _positions(k.shape[-1], q.shape[-1])
    keep = _causal_window(m, p, params) if params["causal"] else True
    return _softmax_av(_scores(q, k), keep, v)


@DIRECT.register("decode")
def _decode(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    if params["grouped"]:
        k, v = _expand_groups(k, q.shape[0]), _expand_groups(v, q.shape[0])
    n_keys, n_queries = k.shape[-1], q.shape[-1]
    m, p = _positions(n_keys, n_queries)
    position = n_keys - n_queries + p  # the new tokens end the sequence
    return _softmax_av(_scores(q, k), _causal_window(m, position, params), v)


@DIRECT.register("bias")
def _bias(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    scores = _scores(q, k)
    if params["kind"] == "tensor":
        scores = scores + inputs["Bias"]
    elif params["kind"] == "alibi":
        scores = scores + inputs["SLOPE"][:, None, None] * (m - p)
    else:
        scores = scores + inputs["U"].T @ inputs["W"]
    return _softmax_av(scores, m <= p if params["causal"] else True, v)


@DIRECT.register("gated")
def _gated(inputs, params):
    return _plain(inputs, params) / (1.0 + np.exp(-inputs["G"]))


@DIRECT.register("sigmoid")
def _sigmoid(inputs, params):
    scores = _scores(inputs["Q"], inputs["K"]) + params["b"]
    return inputs["V"] @ (1.0 / (1.0 + np.exp(-scores)))


@DIRECT.register("linear")
def _linear(inputs, params):
    def phi(x):
        return x if params["phi"] == "identity" else np.where(x > 0, x + 1.0, np.exp(x))

    q, k, v = phi(inputs["Q"]), phi(inputs["K"]), inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    return v @ np.where(m <= p, k.T @ q, 0.0)


@DIRECT.register("agent")
def _agent(inputs, params):
    agents = inputs["AG"]
    agent_values = _softmax_av(_scores(agents, inputs["K"]), True, inputs["V"])  # [f, a]
    return _softmax_av(_scores(inputs["Q"], agents), True, agent_values)


def direct(name: str, inputs: Mapping[str, np.ndarray], **params) -> np.ndarray:
    """AV of attention variant `name` by its direct formula.

    Args:
        name: a registered variant (or alias).
        inputs: the arrays the variant's cascade declares (Q[e,p], K[e,m], V[f,m], ...).
        **params: the variant's parameters; defaults as in `attention(name)`. `form` and
            `M0` do not change the result.

    Example:
        >>> import numpy as np
        >>> q, k, v = np.eye(2), np.eye(2), np.array([[1.0, 3.0]])
        >>> direct("causal", {"Q": q, "K": k, "V": v}).round(3).tolist()
        [[1.0, 2.462]]
    """
    canonical = ATTENTION.canonical(name)
    known = parameters(canonical)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise SpecError(
            f"direct {name!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(known) or 'none'}"
        )
    merged = {**known, **params}
    arrays = {key: np.asarray(value, dtype=np.float64) for key, value in inputs.items()}
    return DIRECT[canonical](arrays, merged)


def random_inputs(
    cascade: Cascade, shape: Mapping[str, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Standard-normal arrays for every input the cascade declares, sized by `shape`."""
    shapes = tensor_shapes(cascade, resolve_shape(cascade, shape))
    return {t.name: rng.normal(size=shapes[t.name]) for t in cascade.inputs}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """`check`'s answer: the variant, the shape it ran on, and the max error per form."""

    variant: str
    params: tuple[tuple[str, object], ...]
    shape: tuple[tuple[str, int], ...]
    max_error: tuple[tuple[str, float], ...]

    @property
    def ok(self) -> bool:
        return all(error <= 1e-9 for _, error in self.max_error)


def check(
    name: str, seed: int = 0, *, shape: Mapping[str, int] | None = None, **params
) -> CheckResult:
    """Evaluate variant `name` (every form, or the one in `params`) on random inputs and
    compare with its direct formula.

    The shape is the variant's first test case (odd sizes, partial tiles); a grid
    parameter (X, Y, T) given in `params` resizes M = P to the grid. `shape` overrides
    sizes of that case ({"M": 4096, "P": 4096}); when it sets M or P but not M0, the
    case's small tile M0 is dropped for the cascade's default.

    Example:
        >>> result = check("causal")
        >>> result.ok, [form for form, _ in result.max_error]
        (True, ['stable_3pass', 'online_2pass', 'fusemax_1pass'])
    """
    canonical = ATTENTION.canonical(name)
    entry = ATTENTION.entry(canonical)
    cases = entry.meta.get("cases") or (({}, ({"E": 4, "F": 3, "M": 7, "P": 5, "M0": 3},)),)
    base, shapes = cases[0]
    merged = {**base, **params}
    sizes = dict(shapes[0])
    grid = [merged.get(k, parameters(canonical).get(k)) for k in ("T", "X", "Y")]
    if any(k in params for k in ("T", "X", "Y")):
        size = math.prod(g for g in grid if g is not None)
        sizes.update(M=size, P=size)
    if shape:
        if ("M" in shape or "P" in shape) and "M0" not in shape:
            sizes.pop("M0", None)
        sizes.update({key: int(value) for key, value in shape.items()})
    form = merged.pop("form", None)
    forms = [form] if form is not None else [f.value for f in entry.meta.get("forms", ())]
    rng = np.random.default_rng(seed)
    errors = []
    drawn: dict = {}  # forms declaring the same inputs share them and the direct result
    for each in forms or [None]:
        cascade = attention(canonical, **merged, **({"form": each} if each else {}))
        shapes = tensor_shapes(cascade, resolve_shape(cascade, sizes))
        declared = tuple((t.name, shapes[t.name]) for t in cascade.inputs)
        if declared not in drawn:
            inputs = random_inputs(cascade, sizes, rng)
            drawn[declared] = (inputs, direct(canonical, inputs, **merged))
        inputs, expected = drawn[declared]
        got = cascade.evaluate(inputs, sizes, keep=cascade.outputs)["AV"]
        errors.append((each or canonical, float(np.max(np.abs(got - expected)))))
    return CheckResult(canonical, tuple(merged.items()), tuple(sizes.items()), tuple(errors))
