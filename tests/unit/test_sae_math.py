"""SAE encode / decode / forward of every architecture against a float64 reference written from the formulas.

The reference below is written from `shared/reference/formats.md` with numpy, independently of
`sae_hub`: `pre = (x' - b_dec·apply) @ W_enc + b_enc`, the activation of each architecture,
`y = f @ W_dec + b_dec (+ x' @ W_skip)`, with x' the scaled and normalised input and the output
de-normalised. Top-k selections use a stable argsort, not `torch.topk`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sae_hub import SAE, SAEConfig
from sae_hub import sae as sae_module

D_IN, D_SAE, D_OUT, K = 12, 48, 10, 5

CASES: dict[str, dict] = {
    "relu": {"architecture": "relu"},
    "relu_prebias": {"architecture": "relu", "apply_b_dec_to_input": True},
    "jumprelu": {"architecture": "jumprelu"},
    "jumprelu_prebias_scaled": {
        "architecture": "jumprelu",
        "apply_b_dec_to_input": True,
        "input_scale": 3.0,
        "output_scale": 3.0,
    },
    "jumprelu_inout_scales": {"architecture": "jumprelu", "input_scale": 2.5, "output_scale": 0.7},
    "topk": {"architecture": "topk", "k": K},
    "topk_relu_first": {"architecture": "topk", "k": K, "relu_before_topk": True},
    "topk_layer_norm": {
        "architecture": "topk",
        "k": K,
        "normalization": "layer_norm",
        "apply_b_dec_to_input": True,
    },
    "relu_constant_norm_rescale": {"architecture": "relu", "normalization": "constant_norm_rescale"},
    "batchtopk_threshold": {"architecture": "batchtopk"},
    "batchtopk_rows": {"architecture": "batchtopk", "batchtopk_mode": "topk", "k": K},
    "gated": {"architecture": "gated", "apply_b_dec_to_input": True},
    "gated_layer_norm": {"architecture": "gated", "normalization": "layer_norm"},
    "abstopk": {"architecture": "abstopk", "k": K},
    "transcoder_jumprelu": {"architecture": "jumprelu", "d_out": D_OUT},
    "skip_transcoder_topk": {"architecture": "topk", "k": K, "d_out": D_OUT, "skip_connection": True},
}


def _cfg(name: str, dtype: torch.dtype = torch.float64) -> SAEConfig:
    return SAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **CASES[name])


def _params(cfg: SAEConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float64 parameters with non-trivial biases, thresholds and gates."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "W_dec": (cfg.d_sae, cfg.out_dim),
        "b_dec": (cfg.out_dim,),
        "b_enc": (cfg.d_sae,),
        "threshold": (cfg.d_sae,),
        "b_gate": (cfg.d_sae,),
        "b_mag": (cfg.d_sae,),
        "r_mag": (cfg.d_sae,),
        "W_skip": (cfg.d_in, cfg.out_dim),
    }.items():
        out[name] = rng.normal(size=shape) / math.sqrt(shape[0] if len(shape) == 2 else 4)
    out["threshold"] = np.abs(out["threshold"]) * 0.8
    if cfg.architecture == "batchtopk":
        out["threshold"] = np.full(cfg.d_sae, 0.3)  # BatchTopK: one global threshold for all latents
    out["W_dec"] *= rng.uniform(0.5, 2.0, size=(cfg.d_sae, 1))  # non-unit decoder norms
    keep = set(SAE(cfg, device="meta").state_dict())
    return {n: v for n, v in out.items() if n in keep}


def _topk_rows(score: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest scores per row (stable, ties by index)."""
    order = np.argsort(-score, axis=-1, kind="stable")[..., :k]
    mask = np.zeros_like(score, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


def reference(cfg: SAEConfig, p: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (features, output) in float64 straight from the published formulas."""
    x = x * cfg.input_scale
    mu = std = coeff = None
    if cfg.normalization == "layer_norm":
        mu = x.mean(-1, keepdims=True)
        std = (x - mu).std(-1, ddof=1, keepdims=True)
        x = (x - mu) / (std + 1e-5)
    elif cfg.normalization == "constant_norm_rescale":
        coeff = math.sqrt(cfg.d_in) / np.linalg.norm(x, axis=-1, keepdims=True)
        x = x * coeff
    x_in = x - p["b_dec"] if cfg.apply_b_dec_to_input else x
    arch = cfg.architecture
    if arch == "gated":
        gate = x_in @ p["W_enc"] + p["b_gate"]
        mag = x_in @ (p["W_enc"] * np.exp(p["r_mag"])) + p["b_mag"]
        f = (gate > 0) * np.maximum(mag, 0)
    else:
        pre = x_in @ p["W_enc"] + p["b_enc"]
        if arch == "relu":
            f = np.maximum(pre, 0)
        elif arch == "jumprelu" or (arch == "batchtopk" and cfg.batchtopk_mode == "threshold"):
            f = np.maximum(pre, 0) * (pre > p["threshold"])
        elif arch == "abstopk":
            f = np.where(_topk_rows(np.abs(pre), cfg.k), pre, 0.0)
        elif arch == "batchtopk" or cfg.relu_before_topk:
            act = np.maximum(pre, 0)
            f = np.where(_topk_rows(act, cfg.k), act, 0.0)
        else:
            f = np.where(_topk_rows(pre, cfg.k), np.maximum(pre, 0), 0.0)
    y = f @ p["W_dec"] + p["b_dec"]
    if cfg.skip_connection:
        y = y + x @ p["W_skip"]
    if std is not None:
        y = y * std + mu
    if coeff is not None:
        y = y / coeff
    return f, y / cfg.output_scale


def _sae(cfg: SAEConfig, p: dict[str, np.ndarray]) -> SAE:
    return SAE.from_tensors(cfg, {n: torch.from_numpy(v) for n, v in p.items()}, dtype=cfg.dtype)


def _inputs(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(*shape, D_IN)) * 2.0 + 0.5


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("lead", [(7,), (2, 3), ()])
def test_float64_matches_reference(name: str, lead: tuple[int, ...]) -> None:
    cfg = _cfg(name)
    p = _params(cfg)
    sae = _sae(cfg, p)
    x = _inputs(lead)
    f_ref, y_ref = reference(cfg, p, x)
    xt = torch.from_numpy(x)
    f = sae.encode(xt)
    assert f.shape == (*lead, D_SAE)
    assert (f != 0).any(), "test data activates no latent; the comparison would be vacuous"
    torch.testing.assert_close(f, torch.from_numpy(f_ref), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sae(xt), torch.from_numpy(y_ref), rtol=1e-10, atol=1e-12)
    if cfg.normalization == "none" and not cfg.skip_connection:
        torch.testing.assert_close(sae.decode(f), torch.from_numpy(y_ref), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_matches_reference(name: str) -> None:
    cfg = _cfg(name, torch.float32)
    p = _params(cfg, seed=3)
    sae = _sae(cfg, p)
    x = _inputs((16,), seed=4)
    f_ref, y_ref = reference(cfg, p, x)
    xt = torch.from_numpy(x).float()
    torch.testing.assert_close(sae.encode(xt).double(), torch.from_numpy(f_ref), rtol=1e-4, atol=1e-5)
    y = sae(xt)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), torch.from_numpy(y_ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sparse_paths_equal_dense(name: str) -> None:
    cfg = _cfg(name)
    sae = _sae(cfg, _params(cfg, seed=5))
    x = torch.from_numpy(_inputs((3, 4), seed=6))
    dense = sae.encode(x)
    values, indices = sae.encode_sparse(x)
    assert values.shape == indices.shape
    assert values.shape[:-1] == (3, 4)
    if cfg.k is not None and sae._uses_topk():
        assert values.shape[-1] == cfg.k
    rebuilt = torch.zeros_like(dense).scatter_add_(-1, indices, values)
    torch.testing.assert_close(rebuilt, dense, rtol=0, atol=0)
    if not cfg.skip_connection:
        _, stats = sae.normalize(x)
        from_sparse = sae.decode_sparse(values, indices, stats)
        torch.testing.assert_close(from_sparse, sae.decode(dense, stats), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(from_sparse, sae(x), rtol=1e-12, atol=1e-12)


def test_sparse_decode_matches_dense_matmul_above_and_below_density_switch() -> None:
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=torch.float64)
    sae = _sae(cfg, _params(cfg))
    gen = torch.Generator().manual_seed(0)
    for density in (0.01, 0.5):
        f = torch.rand(64, D_SAE, generator=gen, dtype=torch.float64)
        f = f * (torch.rand(64, D_SAE, generator=gen, dtype=torch.float64) < density)
        expected = f @ sae.W_dec.detach() + sae.b_dec.detach()
        torch.testing.assert_close(sae.decode(f), expected, rtol=1e-12, atol=1e-12)


def test_jumprelu_threshold_is_strict() -> None:
    cfg = SAEConfig(d_in=2, d_sae=3, architecture="jumprelu", dtype=torch.float64)
    t = {
        "W_enc": torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64),
        "b_enc": torch.zeros(3, dtype=torch.float64),
        "threshold": torch.tensor([0.5, 1.0, -1.0], dtype=torch.float64),
        "W_dec": torch.eye(3, 2, dtype=torch.float64),
        "b_dec": torch.zeros(2, dtype=torch.float64),
    }
    sae = SAE.from_tensors(cfg, t)
    f = sae.encode(torch.tensor([[1.0, 7.0]], dtype=torch.float64))
    # pre = 1 everywhere: above 0.5, equal to 1.0 (strict > keeps it off), above -1 (ReLU keeps it).
    assert f.tolist() == [[1.0, 0.0, 1.0]]
    f_neg = sae.encode(torch.tensor([[-0.5, 0.0]], dtype=torch.float64))
    assert f_neg.tolist() == [[0.0, 0.0, 0.0]]  # negative threshold never lets a negative through


def test_layer_norm_output_uses_std_without_eps() -> None:
    """OpenAI v5 / SAELens: input / (std + eps), output * std (no eps): identity decoder is exact."""
    d = 4
    cfg = SAEConfig(d_in=d, d_sae=d, architecture="relu", normalization="layer_norm", dtype=torch.float64)
    t = {
        "W_enc": torch.eye(d, dtype=torch.float64),
        "b_enc": torch.full((d,), 10.0, dtype=torch.float64),
        "W_dec": torch.eye(d, dtype=torch.float64),
        "b_dec": torch.full((d,), -10.0, dtype=torch.float64),
    }
    sae = SAE.from_tensors(cfg, t)
    x = torch.tensor([[1e-4, -2e-4, 3e-4, 0.0]], dtype=torch.float64)  # tiny std: eps matters
    mu = x.mean(-1, keepdim=True)
    std = (x - mu).std(-1, keepdim=True)
    expected = (x - mu) / (std + 1e-5) * std + mu
    torch.testing.assert_close(sae(x), expected, rtol=1e-12, atol=1e-15)


def test_constant_norm_rescale_keeps_zero_tokens_finite() -> None:
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, normalization="constant_norm_rescale", dtype=torch.float64)
    sae = _sae(cfg, _params(cfg))
    y = sae(torch.zeros(2, D_IN, dtype=torch.float64))
    assert torch.isfinite(y).all()


def test_bfloat16_input_into_float32_sae_and_back() -> None:
    cfg = _cfg("topk_layer_norm", torch.float32)
    sae = _sae(cfg, _params(cfg))
    x = torch.from_numpy(_inputs((8,))).to(torch.bfloat16)
    y = sae(x)
    assert y.dtype == torch.bfloat16
    assert sae.encode(x).dtype == torch.float32
    torch.testing.assert_close(y.float(), sae(x.float()).bfloat16().float(), rtol=0, atol=0)


def test_bfloat16_sae_close_to_float64_reference() -> None:
    cfg = _cfg("relu_constant_norm_rescale", torch.bfloat16)
    p = _params(cfg)
    sae = _sae(cfg, p)
    assert sae.W_enc.dtype == torch.bfloat16
    x = _inputs((16,))
    _, y_ref = reference(cfg, {n: torch.from_numpy(v).bfloat16().double().numpy() for n, v in p.items()}, x)
    y = sae(torch.from_numpy(x).float())
    assert y.dtype == torch.float32
    err = (y.double() - torch.from_numpy(y_ref)).norm() / torch.from_numpy(y_ref).norm()
    assert err < 2e-2


def test_to_keeps_cfg_dtype_in_sync() -> None:
    sae = SAE(SAEConfig(d_in=4, d_sae=8, architecture="jumprelu"))
    sae.to(torch.bfloat16)
    assert sae.cfg.dtype == torch.bfloat16 == sae.dtype
    sae.double()
    assert sae.cfg.dtype == torch.float64
    assert sae(torch.randn(2, 4)).dtype == torch.float32


def test_error_term_is_exact_residual() -> None:
    cfg = _cfg("topk_layer_norm")
    sae = _sae(cfg, _params(cfg))
    x = torch.from_numpy(_inputs((5,)))
    torch.testing.assert_close(sae(x) + sae.error(x), x, rtol=0, atol=1e-12)
    tc = _sae(_cfg("transcoder_jumprelu"), _params(_cfg("transcoder_jumprelu")))
    with pytest.raises(ValueError, match="target"):
        tc.error(x)
    target = torch.randn(5, D_OUT, dtype=torch.float64)
    torch.testing.assert_close(tc.error(x, target), target - tc(x))


def test_wrong_input_width_names_both_shapes() -> None:
    sae = SAE(SAEConfig(d_in=4, d_sae=8))
    with pytest.raises(ValueError, match=r"\(2, 5\).*\[\.\.\., 4\]"):
        sae(torch.randn(2, 5))
    with pytest.raises(ValueError, match="differ"):
        sae.decode_sparse(torch.ones(2, 3), torch.zeros(2, 4, dtype=torch.long))


def test_gradients_flow_through_sparse_forward() -> None:
    cfg = _cfg("topk", torch.float64)
    sae = _sae(cfg, _params(cfg))
    x = torch.from_numpy(_inputs((6,)))
    sae(x).square().sum().backward()
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        grad = getattr(sae, name).grad
        assert grad is not None
        assert grad.abs().sum() > 0, name


def test_empty_batch() -> None:
    for name in ("jumprelu", "topk", "gated"):
        sae = SAE(_cfg(name))
        x = torch.zeros(0, D_IN, dtype=torch.float64)
        assert sae(x).shape == (0, D_IN)
        values, indices = sae.encode_sparse(x)
        assert values.shape[0] == indices.shape[0] == 0


@pytest.mark.parametrize("name", ["jumprelu", "topk_layer_norm", "skip_transcoder_topk"])
def test_forward_in_token_chunks_matches_reference(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sae_module, "FORWARD_CHUNK_ELEMENTS", 1)  # 256-token chunks
    cfg = _cfg(name)
    p = _params(cfg)
    x = _inputs((3, 250), seed=9)  # 750 tokens: three chunks, the last one partial
    _, y_ref = reference(cfg, p, x)
    torch.testing.assert_close(
        _sae(cfg, p)(torch.from_numpy(x)), torch.from_numpy(y_ref), rtol=1e-10, atol=1e-12
    )
