"""Attention: the scaled_dot_product_attention pair and nn.MultiheadAttention (gradient checks, float64 parity with
PyTorch for the forward and every gradient, masks, dropout, bad input), and Linear/LayerNorm on (N, L, D) tokens."""

# The bad-input cases are one per line, so a failing id points at it: the long lines there are deliberate.
# ruff: noqa: E501

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn import functional as F
from minidl.nn.attention_pairs import scaled_dot_product_attention_backward as sdpa_backward
from minidl.nn.attention_pairs import scaled_dot_product_attention_forward as sdpa_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

TOL = dict(atol=1e-10, rtol=1e-10)


# ---------------------------------------------------------------------------------------------- the pair
@st.composite
def sdpa_cases(draw):
    """Shapes and options of one scaled_dot_product_attention call (float64 arrays drawn from ``seed``)."""
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple))
    length, source, e, ev = (draw(st.integers(1, 5)) for _ in range(4))
    mask = draw(st.sampled_from(["none", "bool", "float", "causal", "bool-broadcast"]))
    gqa = draw(st.booleans()) and len(lead) >= 1
    groups = draw(st.integers(1, 3)) if gqa else 1
    scale = draw(st.none() | st.floats(0.1, 2.0))
    return dict(lead=lead, length=length, source=source, e=e, ev=ev, mask=mask, groups=groups, scale=scale)


def _sdpa_inputs(case, seed):
    rng = np.random.default_rng(seed)
    lead, groups = case["lead"], case["groups"]
    q_lead = lead[:-1] + (lead[-1] * groups,) if groups > 1 else lead
    q = rng.standard_normal((*q_lead, case["length"], case["e"]))
    k = rng.standard_normal((*lead, case["source"], case["e"]))
    v = rng.standard_normal((*lead, case["source"], case["ev"]))
    scores = (*q_lead, case["length"], case["source"])
    kw = {"scale": case["scale"], "enable_gqa": groups > 1}
    if case["mask"] == "bool":
        kw["attn_mask"] = rng.random(scores) < 0.7  # True: may attend (some rows may be empty)
    elif case["mask"] == "bool-broadcast":
        kw["attn_mask"] = rng.random(scores[-2:]) < 0.7
    elif case["mask"] == "float":
        kw["attn_mask"] = rng.standard_normal(scores)
    elif case["mask"] == "causal":
        kw["is_causal"] = True
    return q, k, v, kw


@given(case=sdpa_cases(), seed=seeds, dropout_p=st.sampled_from([0.0, 0.0, 0.3]))
def test_sdpa_gradcheck(case, seed, dropout_p):
    """Central differences for dq, dk, dv (dropout too: gradcheck reseeds the generator, so the mask repeats)."""
    q, k, v, kw = _sdpa_inputs(case, seed)
    kw["dropout_p"] = dropout_p
    report = gradcheck.check_function(sdpa_forward, sdpa_backward, [arr(q), arr(k), arr(v)], kw)
    assert [e.name for e in report.entries] == ["input 0", "input 1", "input 2"]


@given(case=sdpa_cases(), seed=seeds)
def test_sdpa_matches_pytorch(case, seed):
    torch = torch_or_skip()
    q, k, v, kw = _sdpa_inputs(case, seed)
    out, cache = F.scaled_dot_product_attention_forward(arr(q), arr(k), arr(v), **kw)
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grads = F.scaled_dot_product_attention_backward(arr(dout), cache)
    tq, tk, tv = (to_torch(a, requires_grad=True) for a in (q, k, v))
    tkw = dict(kw)
    if "attn_mask" in tkw:
        tkw["attn_mask"] = torch.as_tensor(tkw["attn_mask"])
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkw)
    ref.backward(to_torch(dout))
    what = f"sdpa {case}"
    assert_close(out, ref, **TOL, what=f"{what}: forward")
    for name, g, t in zip(("dq", "dk", "dv"), grads, (tq, tk, tv), strict=True):
        assert_close(g, t.grad, **TOL, what=f"{what}: {name}")


def test_sdpa_a_query_with_no_key_gets_zero_output_and_gradient_as_pytorch():
    torch = torch_or_skip()
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 2))
    mask = rng.random((3, 5)) < 0.6
    mask[1] = False  # query 1 may attend to nothing
    out, cache = F.scaled_dot_product_attention_forward(arr(q), arr(k), arr(v), attn_mask=arr(mask))
    assert np.all(host(out)[:, 1] == 0) and np.all(host(cache.attn_weights)[:, 1] == 0)
    dout = rng.standard_normal(out.shape)
    grads = F.scaled_dot_product_attention_backward(arr(dout), cache)
    tq, tk, tv = (to_torch(a, requires_grad=True) for a in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.as_tensor(mask))
    ref.backward(to_torch(dout))
    assert_close(out, ref, **TOL, what="forward")
    for g, t in zip(grads, (tq, tk, tv), strict=True):
        assert_close(g, t.grad, **TOL, what="gradient")


def test_sdpa_known_values_and_weights_in_the_cache():
    q = arr(np.array([[[10.0, 0.0]]]))  # one query, strongly aligned with key 0
    k = arr(np.array([[[1.0, 0.0], [0.0, 1.0]]]))
    v = arr(np.array([[[1.0], [-1.0]]]))
    out, cache = F.scaled_dot_product_attention_forward(q, k, v, scale=1.0)
    p0 = np.exp(10.0) / (np.exp(10.0) + 1.0)
    np.testing.assert_allclose(host(cache.attn_weights), [[[p0, 1 - p0]]], rtol=1e-12)
    np.testing.assert_allclose(host(out), [[[p0 - (1 - p0)]]], rtol=1e-12)


def test_sdpa_dropout_is_inverted_and_seeded():
    q, k, v = (arr(np.ones((1, 4, 3))) for _ in range(3))
    minidl.manual_seed(3)
    _, cache = F.scaled_dot_product_attention_forward(q, k, v, dropout_p=0.5)
    weights = host(cache.attn_weights)  # each weight 1/4 kept as 1/2, or dropped
    assert set(np.unique(weights)) <= {0.0, 0.5} and (weights == 0).any() and (weights == 0.5).any()
    minidl.manual_seed(3)
    _, again = F.scaled_dot_product_attention_forward(q, k, v, dropout_p=0.5)
    assert np.array_equal(host(again.attn_weights), weights)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda q, k, v: sdpa_forward(q, k[..., :2], v), ValueError, r"query \(\.\.\., L, E\) and key .* share E"),
        (lambda q, k, v: sdpa_forward(q, k, v[:, :1]), ValueError, r"key \(\.\.\., S, E\) and value .* agree on"),
        (lambda q, k, v: sdpa_forward(q, k[:1], v[:1]), ValueError, r"same leading dimensions \(no broadcasting\)"),
        (lambda q, k, v: sdpa_forward(q, k, v, attn_mask=np.ones((4, 2), bool)), ValueError, r"attn_mask of shape"),
        (
            lambda q, k, v: sdpa_forward(q, k, v, attn_mask=np.ones((3, 5), np.float32)),
            TypeError,
            r"attn_mask must be bool .* or the query's dtype float64 .*got dtype float32",
        ),
        (
            lambda q, k, v: sdpa_forward(q, k, v, attn_mask=np.ones((3, 5), bool), is_causal=True),
            ValueError,
            r"either attn_mask or is_causal=True, not both",
        ),
        (lambda q, k, v: sdpa_forward(q, k, v, dropout_p=1.5), ValueError, r"dropout_p must be <= 1"),
        (lambda q, k, v: sdpa_forward(q, k.astype(np.float32), v), TypeError, r"the key has dtype float32"),
        (
            lambda q, k, v: sdpa_forward(q[0], k[0], v[0], enable_gqa=True),
            ValueError,
            r"enable_gqa needs a heads dimension",
        ),
        (lambda q, k, v: sdpa_backward(np.ones((2, 3, 5)), None), TypeError, r"expected the cache"),
        (
            lambda q, k, v: sdpa_backward(np.ones((2, 3, 2)), sdpa_forward(q, k, v)[1]),
            ValueError,
            r"gradient has shape \(2, 3, 2\) but the forward output had shape \(2, 3, 4\)",
        ),
    ],
)
def test_sdpa_bad_input(call, error, message):
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 5, 4))
    with pytest.raises(error, match=r"^scaled_dot_product_attention_(forward|backward): .*" + message):
        call(q, k, v)


# ---------------------------------------------------------------------------------------------- MultiheadAttention
def _mha(**kw) -> nn.MultiheadAttention:
    minidl.set_default_dtype(np.float64)
    try:
        return nn.MultiheadAttention(**kw)
    finally:
        minidl.set_default_dtype(np.float32)


def _to_torch_mha(ours, torch, **kw):
    theirs = torch.nn.MultiheadAttention(**kw, dtype=torch.float64)
    theirs.load_state_dict({k: torch.as_tensor(host(v)) for k, v in ours.state_dict().items()})
    return theirs


@st.composite
def mha_cases(draw):
    heads = draw(st.integers(1, 3))
    e = heads * draw(st.integers(1, 3))
    same = draw(st.booleans())
    return dict(
        n=draw(st.integers(1, 3)),
        length=draw(st.integers(1, 4)),
        source=draw(st.integers(1, 4)),
        embed_dim=e,
        num_heads=heads,
        bias=draw(st.booleans()),
        kdim=None if same else draw(st.integers(1, 4)),
        vdim=None if same else draw(st.integers(1, 4)),
        batch_first=draw(st.booleans()),
        attn_mask=draw(st.sampled_from(["none", "bool2d", "float2d", "bool3d", "float3d"])),
        key_padding_mask=draw(st.sampled_from(["none", "bool", "float"])),
        need_weights=draw(st.booleans()),
        average=draw(st.booleans()),
        add_bias_kv=draw(st.booleans()),
        add_zero_attn=draw(st.booleans()),
        unbatched=draw(st.booleans()),
    )


def _mha_inputs(case, seed):
    """query, key, value in the case's layout and its masks (never a query with no key: PyTorch gives NaN there)."""
    rng = np.random.default_rng(seed)
    n, length, source, h = case["n"], case["length"], case["source"], case["num_heads"]
    n = 1 if case["unbatched"] else n
    kdim, vdim = case["kdim"] or case["embed_dim"], case["vdim"] or case["embed_dim"]

    def layout(seq, size):
        return (n, seq, size) if case["batch_first"] else (seq, n, size)

    x = [rng.standard_normal(layout(length, case["embed_dim"])), rng.standard_normal(layout(source, kdim))]
    x.append(rng.standard_normal(layout(source, vdim)))
    masks = {}
    kind = case["attn_mask"]
    if kind != "none":
        shape = (length, source) if kind.endswith("2d") else (n * h, length, source)
        if kind.startswith("bool"):
            masks["attn_mask"] = rng.random(shape) < 0.4  # True: not allowed
            masks["attn_mask"][..., 0] = False
        else:
            masks["attn_mask"] = rng.standard_normal(shape)
    if case["key_padding_mask"] == "bool":
        masks["key_padding_mask"] = rng.random((n, source)) < 0.4
        masks["key_padding_mask"][:, 0] = False
    elif case["key_padding_mask"] == "float":
        masks["key_padding_mask"] = rng.standard_normal((n, source))
    if case["unbatched"]:  # PyTorch's unbatched inputs: (L, E), (S,) key padding, (L, S) or (H, L, S) attn_mask
        x = [a[0] if case["batch_first"] else a[:, 0] for a in x]
        if "key_padding_mask" in masks:
            masks["key_padding_mask"] = masks["key_padding_mask"][0]
    return x, masks


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask and attn_mask is deprecated")
@given(case=mha_cases(), seed=seeds)
def test_mha_matches_pytorch(case, seed):
    """Loaded with the same state_dict, forward, weights, dquery, dkey, dvalue and every parameter gradient agree."""
    torch = torch_or_skip()
    minidl.manual_seed(seed)
    init = {k: case[k] for k in ("embed_dim", "num_heads", "bias", "kdim", "vdim", "batch_first")}
    init.update(add_bias_kv=case["add_bias_kv"], add_zero_attn=case["add_zero_attn"])
    ours = _mha(**init)
    theirs = _to_torch_mha(ours, torch, **init)
    (q, k, v), masks = _mha_inputs(case, seed)
    options = dict(need_weights=case["need_weights"], average_attn_weights=case["average"])
    out, weights = ours(arr(q), arr(k), arr(v), **{m: arr(a) for m, a in masks.items()}, **options)
    tq, tk, tv = (to_torch(a, requires_grad=True) for a in (q, k, v))
    ref, ref_weights = theirs(tq, tk, tv, **{m: torch.as_tensor(a) for m, a in masks.items()}, **options)
    what = f"MHA {case}"
    assert_close(out, ref, **TOL, what=f"{what}: attn_output")
    if case["need_weights"]:
        assert_close(weights, ref_weights, **TOL, what=f"{what}: attn_weights")
    else:
        assert weights is None and ref_weights is None
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grads = ours.backward(arr(dout))
    ref.backward(to_torch(dout))
    for name, g, t in zip(("dquery", "dkey", "dvalue"), grads, (tq, tk, tv), strict=True):
        assert_close(g, t.grad, **TOL, what=f"{what}: {name}")
    theirs_params = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs_params[name].grad, **TOL, what=f"{what}: d{name}")


class _SelfAttention(nn.Module):
    """``mha(x, x, x)[0]`` as a one-input module (its gradient is the sum of the three), for gradcheck.check_module."""

    def __init__(self, mha: nn.MultiheadAttention, **options) -> None:
        super().__init__()
        self.mha = mha
        self.options = options

    def forward(self, x):
        return self.mha(x, x, x, **self.options)[0]

    def backward(self, dout):
        dquery, dkey, dvalue = self.mha.backward(dout)
        return dquery + dkey + dvalue


@given(case=mha_cases(), seed=seeds, dropout=st.sampled_from([0.0, 0.25]))
def test_mha_gradcheck(case, seed, dropout):
    """Self-attention (input and every parameter, dropout included) and cross-attention (the three inputs)."""
    minidl.manual_seed(seed)
    init = {k: case[k] for k in ("embed_dim", "num_heads", "bias", "batch_first", "add_bias_kv", "add_zero_attn")}
    mha = _mha(**init, dropout=dropout)
    (q, k, v), masks = _mha_inputs({**case, "kdim": None, "vdim": None, "source": case["length"]}, seed)
    masks = {m: arr(a) for m, a in masks.items()}
    report = gradcheck.check_module(_SelfAttention(mha, **masks), arr(q))
    expected = {"input", "mha.in_proj_weight", "mha.out_proj.weight"} | (
        {"mha.bias_k"} if case["add_bias_kv"] else set()
    )
    assert {e.name for e in report.entries} >= expected

    cross = _mha(**init, kdim=case["kdim"], vdim=case["vdim"])
    (q, k, v), masks = _mha_inputs(case, seed)
    masks = {m: arr(a) for m, a in masks.items()}

    def forward(query, key, value):
        return cross(query, key, value, **masks, need_weights=False)[0], None

    gradcheck.check_function(forward, lambda dout, _: cross.backward(dout), [arr(q), arr(k), arr(v)])


def test_mha_state_dict_keys_and_init_as_pytorch():
    torch = torch_or_skip()
    for kw in (
        dict(embed_dim=6, num_heads=2),
        dict(embed_dim=6, num_heads=3, kdim=4, vdim=5, bias=False),
        dict(embed_dim=6, num_heads=2, add_bias_kv=True, add_zero_attn=True),
    ):
        ours, theirs = nn.MultiheadAttention(**kw), torch.nn.MultiheadAttention(**kw)
        assert list(ours.state_dict()) == list(theirs.state_dict()), kw
        for key, value in theirs.state_dict().items():
            assert host(ours.state_dict()[key]).shape == tuple(value.shape), (kw, key)
    mha = nn.MultiheadAttention(64, 4)
    bound = np.sqrt(6.0 / (64 + 192))  # xavier_uniform_ on the (3E, E) in_proj_weight
    w = host(mha.in_proj_weight.data)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not host(mha.in_proj_bias.data).any() and not host(mha.out_proj.bias.data).any()
    assert np.abs(host(mha.out_proj.weight.data)).max() <= 1 / 8  # Linear's U(-1/sqrt(E), 1/sqrt(E))


def test_mha_loads_a_pytorch_state_dict():
    torch = torch_or_skip()
    theirs = torch.nn.MultiheadAttention(6, 3, batch_first=True, add_bias_kv=True)
    ours = nn.MultiheadAttention(6, 3, batch_first=True, add_bias_kv=True)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    out, weights = ours(arr(x), arr(x), arr(x))
    ref, ref_weights = theirs(*(torch.tensor(x) for _ in range(3)))
    assert_close(out, ref, atol=1e-6, rtol=1e-5, what="attn_output")
    assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5, what="attn_weights")


def test_mha_dropout_only_in_training_and_weights_after_dropout():
    minidl.manual_seed(0)
    mha = _mha(embed_dim=4, num_heads=2, dropout=0.5, batch_first=True)
    x = arr(np.random.default_rng(0).standard_normal((2, 6, 4)))
    _, weights = mha(x, x, x, average_attn_weights=False)
    assert (host(weights) == 0).any()  # dropped weights, as PyTorch returns them
    mha.eval()
    out, weights = mha(x, x, x)
    np.testing.assert_allclose(host(weights).sum(axis=-1), 1.0, rtol=1e-12)
    again, _ = mha(x, x, x)
    assert np.array_equal(host(out), host(again))


def test_mha_causal_hint_uses_attn_mask_and_a_query_with_no_key():
    mha = _mha(embed_dim=4, num_heads=1, batch_first=True)
    x = arr(np.random.default_rng(0).standard_normal((1, 3, 4)))
    causal = np.triu(np.ones((3, 3), bool), k=1)  # True: not allowed
    _, weights = mha(x, x, x, attn_mask=arr(causal), is_causal=True)
    assert np.all(host(weights)[0][causal] == 0)
    padding = arr(np.ones((1, 3), bool))  # every key padded: the output is out_proj's bias (zero here)
    out, weights = mha(x, x, x, key_padding_mask=padding)
    assert not host(out).any() and not host(weights).any()


def test_mha_a_sample_with_every_key_padded_matches_pytorch_without_weights():
    """PyTorch's need_weights=False path (its SDPA) gives such a query weights 0, so output out_proj.bias and no
    gradient through the attention; minidl does the same whatever need_weights is."""
    torch = torch_or_skip()
    rng = np.random.default_rng(0)
    ours = _mha(embed_dim=4, num_heads=2, batch_first=True)
    ours.in_proj_bias.data[...] = rng.standard_normal(12)
    ours.out_proj.bias.data[...] = rng.standard_normal(4)
    theirs = _to_torch_mha(ours, torch, embed_dim=4, num_heads=2, batch_first=True)
    x, dout = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    padding = np.zeros((2, 3), bool)
    padding[1] = True  # sample 1: no key at all
    out, _ = ours(arr(x), arr(x), arr(x), key_padding_mask=arr(padding))
    grads = ours.backward(arr(dout))
    tx = [to_torch(x, requires_grad=True) for _ in range(3)]
    ref, _ = theirs(*tx, key_padding_mask=torch.as_tensor(padding), need_weights=False)
    ref.backward(to_torch(dout))
    assert_close(out, ref, **TOL, what="attn_output")
    for g, t in zip(grads, tx, strict=True):
        assert_close(g, t.grad, **TOL, what="input gradient")
    for name, p in theirs.named_parameters():
        assert_close(dict(ours.named_parameters())[name].grad, p.grad, **TOL, what=f"d{name}")


def test_mha_calls_its_pairs_through_f(monkeypatch):
    calls = []
    for op in ("linear_forward", "linear_backward", "scaled_dot_product_attention_forward"):
        original = getattr(F, op)
        monkeypatch.setattr(F, op, lambda *a, _f=original, _op=op, **k: calls.append(_op) or _f(*a, **k))
    mha = nn.MultiheadAttention(4, 2)
    x = arr(np.ones((3, 2, 4), np.float32))
    out, _ = mha(x, x, x)
    mha.backward(arr(np.ones_like(host(out))))
    assert calls.count("linear_forward") == 4 and calls.count("linear_backward") == 4  # q, k, v and out_proj
    assert calls.count("scaled_dot_product_attention_forward") == 1


def test_mha_frozen_parameters_get_no_gradient():
    mha = _mha(embed_dim=4, num_heads=2, kdim=3, vdim=4)
    mha.k_proj_weight.requires_grad = False
    mha.in_proj_bias.requires_grad = False
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 1, 4)), rng.standard_normal((3, 1, 3)), rng.standard_normal((3, 1, 4))
    out, _ = mha(arr(q), arr(k), arr(v))
    dq, dk, dv = mha.backward(arr(np.ones(out.shape)))
    assert mha.k_proj_weight.grad is None and mha.in_proj_bias.grad is None
    assert mha.q_proj_weight.grad.shape == (4, 4) and mha.v_proj_weight.grad.shape == (4, 4)
    assert dk.shape == (3, 1, 3)


X = np.zeros((2, 3, 8), np.float32)  # (L, N, E) for batch_first=False
NAME = r"^MultiheadAttention\(embed_dim=8, num_heads=2\)"


def _backward_of_tuple():
    mha = nn.MultiheadAttention(8, 2)
    out = mha(X, X, X)
    return mha.backward(out)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: nn.MultiheadAttention(8, 3), ValueError, r"^MultiheadAttention: embed_dim must be divisible by "),
        (lambda: nn.MultiheadAttention(8, 2, dropout=1.5), ValueError, r"^MultiheadAttention: dropout must be <= 1"),
        (lambda: nn.MultiheadAttention(8, 2)(X[0], X, X), ValueError, NAME + r": expected the key as \(S, kdim\) with kdim=8 \(batch_first=False; the query is unbatched\), got shape \(2, 3, 8\)"),
        (lambda: nn.MultiheadAttention(8, 2)(X, X[..., :4], X), ValueError, NAME + r": expected the key as \(S, N, kdim\) with kdim=8"),
        (lambda: nn.MultiheadAttention(8, 2)(X, X[:, :2], X[:, :2]), ValueError, NAME + r": query, key and value must share N"),
        (lambda: nn.MultiheadAttention(8, 2)(X.astype(np.float64), X, X), TypeError, NAME + r": the query has dtype float64 but the layer's parameters are float32"),
        (lambda: nn.MultiheadAttention(8, 2)(X, X, X, attn_mask=np.zeros((3, 3), bool)), ValueError, NAME + r": expected attn_mask of shape \(L, S\) = \(2, 2\), got shape \(3, 3\)"),
        (lambda: nn.MultiheadAttention(8, 2)(X, X, X, attn_mask=np.zeros((3, 2, 2), bool)), ValueError, NAME + r": expected attn_mask of shape \(N \* num_heads, L, S\) = \(6, 2, 2\)"),
        (lambda: nn.MultiheadAttention(8, 2)(X, X, X, key_padding_mask=np.zeros((2, 3), bool)), ValueError, NAME + r": expected key_padding_mask of shape \(N, S\) = \(3, 2\), got shape \(2, 3\)"),
        (lambda: nn.MultiheadAttention(8, 2)(X, X, X, key_padding_mask=np.zeros((3, 2), np.int64)), TypeError, NAME + r": key_padding_mask must be bool \(True = not allowed\) or the input's dtype float32"),
        (lambda: nn.MultiheadAttention(8, 2)(X, X, X, is_causal=True), ValueError, NAME + r": is_causal=True is a hint that attn_mask is the causal mask and needs that attn_mask"),
        (_backward_of_tuple, TypeError, NAME + r"\.backward: expected the gradient of attn_output \(one array\), got a tuple"),
        (lambda: nn.MultiheadAttention(8, 2).backward(X), RuntimeError, r"^MultiheadAttention\.backward\(\) was called without a matching forward"),
    ],
)  # fmt: skip
def test_mha_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------------------------------------- tokens (N, L, D)
@given(seed=seeds, n=st.integers(1, 3), length=st.integers(1, 5), d=st.integers(1, 6), out=st.integers(1, 4))
def test_linear_and_layernorm_on_token_inputs_match_pytorch(seed, n, length, d, out):
    """A transformer's (N, L, D) tokens: Linear acts on D for every token, LayerNorm normalizes each token's D."""
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    minidl.set_default_dtype(np.float64)
    try:
        layers = [nn.Linear(d, out), nn.LayerNorm(d)]
    finally:
        minidl.set_default_dtype(np.float32)
    layers[1].weight.data[...] = rng.standard_normal(d)
    layers[1].bias.data[...] = rng.standard_normal(d)
    for ours, theirs in zip(layers, (torch.nn.Linear(d, out), torch.nn.LayerNorm(d)), strict=True):
        theirs = theirs.double()
        theirs.load_state_dict({k: torch.as_tensor(host(v)) for k, v in ours.state_dict().items()})
        x = rng.standard_normal((n, length, d))
        y = ours(arr(x))
        tx = to_torch(x, requires_grad=True)
        ref = theirs(tx)
        dout = rng.standard_normal(y.shape)
        dx = ours.backward(arr(dout))
        ref.backward(to_torch(dout))
        name = type(ours).__name__
        assert_close(y, ref, **TOL, what=f"{name} forward")
        assert_close(dx, tx.grad, **TOL, what=f"{name} dx")
        for (p_name, p), (_, t) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
            assert_close(p.grad, t.grad, **TOL, what=f"{name} d{p_name}")
        ours.zero_grad()
        gradcheck.check_module(ours, arr(x))


# ---------------------------------------------------------------------------------------------- on a device
def test_mha_and_embedding_on_the_cupy_stand_in_match_numpy(monkeypatch):
    """The CPU stand-in for CuPy (tests/gpu/fake_cupy.py): the same numbers as on NumPy, and no value read back to the
    host by attention (Embedding reads the indices' min and max, to refuse an out-of-range index)."""
    import sys

    from minidl import backend as backend_module
    from tests.gpu.fake_cupy import make_fake_cupy

    fake = make_fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(
        backend_module, "_INSTANCES", {k: v for k, v in backend_module._INSTANCES.items() if k != "cupy"}
    )
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((2, 5, 6)).astype(np.float32), rng.standard_normal((2, 5, 6)).astype(np.float32)
    padding = np.zeros((2, 5), bool)
    padding[:, 3:] = True
    indices = np.array([[0, 3, 3], [1, 2, 0]])
    results = {}
    for name in ("numpy", "cupy"):
        with minidl.use_backend("numpy"):
            minidl.manual_seed(0)
            mha, emb = nn.MultiheadAttention(6, 2, batch_first=True), nn.Embedding(4, 6)
        with minidl.use_backend(name) as be:
            mha.to(name)
            emb.to(name)
            start = len(fake.syncs)
            out, weights = mha(be.asarray(x), be.asarray(x), be.asarray(x), key_padding_mask=be.asarray(padding))
            grads = mha.backward(be.asarray(dout))
            assert fake.syncs[start:] == [], fake.syncs[start:]
            table = emb(be.asarray(indices))
            emb.backward(be.asarray(np.ones(table.shape, np.float32)))
            assert all("nn/embedding.py" in caller for _, caller in fake.syncs[start:]), fake.syncs[start:]
            results[name] = [minidl.to_numpy(a) for a in (out, weights, *grads, mha.in_proj_weight.grad, table)]
            results[name].append(minidl.to_numpy(emb.weight.grad))
    for ours, reference in zip(results["cupy"], results["numpy"], strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_sdpa_asks_for_one_dtype_not_for_a_converted_layer():
    q = np.random.default_rng(0).standard_normal((2, 4, 8))
    with pytest.raises(
        TypeError, match=r"the key has dtype float32 but the query has float64; they must have one dtype"
    ):
        F.scaled_dot_product_attention_forward(q, q.astype(np.float32), q)
