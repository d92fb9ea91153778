"""`SAE`: one canonical sparse autoencoder (or transcoder) module for every architecture and format.

Parameters are in the orientation most of the field uses: `W_enc [d_in, d_sae]`, `b_enc [d_sae]`,
`W_dec [d_sae, d_out]`, `b_dec [d_out]`, optional `threshold [d_sae]` (jumprelu, batchtopk),
`b_gate`, `b_mag`, `r_mag` (gated, which has no `b_enc`) and `W_skip [d_in, d_out]`. The math
follows each upstream release exactly; see `shared/reference/formats.md` for the formulas.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from sae_hub import _sparse
from sae_hub.config import SAEConfig, dtype_from_str, expected_shapes, validate_tensors
from sae_hub.errors import ConfigError
from sae_hub.normalization import NormStats, denormalize, normalize

if TYPE_CHECKING:
    from sae_hub.config import Provenance

logger = logging.getLogger(__name__)

# forward() encodes at most this many pre-activations at once (64 Mi elements, 256 MiB in float32),
# so splicing a wide SAE into a long batch does not allocate a [tokens, d_sae] tensor in one piece.
FORWARD_CHUNK_ELEMENTS = 1 << 26


class SparseCode(NamedTuple):
    """A sparse feature code: `values[..., j]` is the activation of latent `indices[..., j]`."""

    values: Tensor
    indices: Tensor


class SAE(nn.Module):
    """A sparse autoencoder in canonical form: `encode`, `decode`, `forward`, sparse variants, folds."""

    def __init__(self, cfg: SAEConfig, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        for name, shape in expected_shapes(cfg).items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, dtype=cfg.dtype, device=device)))
        if torch.device(device or "cpu").type != "meta":
            self.reset_parameters()

    # ---- construction ----------------------------------------------------------------------

    @torch.no_grad()
    def reset_parameters(self, *, seed: int | None = None) -> None:
        """Initialise for training: unit-norm random decoder rows, encoder = decoder transpose, zero biases."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        w = torch.randn(self.cfg.d_sae, self.cfg.out_dim, generator=gen, dtype=torch.float32)
        w /= w.norm(dim=-1, keepdim=True)
        self.W_dec.copy_(w)
        enc = (
            w.T
            if self.cfg.d_in == self.cfg.out_dim
            else torch.randn(self.cfg.d_in, self.cfg.d_sae, generator=gen) / self.cfg.d_in**0.5
        )
        self.W_enc.copy_(enc)
        for name, p in self.named_parameters():
            if name not in ("W_enc", "W_dec"):
                p.zero_()

    @classmethod
    def from_tensors(
        cls,
        cfg: SAEConfig,
        tensors: Mapping[str, Tensor],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        source: str = "",
        check_finite: bool = True,
    ) -> SAE:
        """Build an SAE that takes ownership of `tensors` (no second copy: built on meta, then assigned).

        `check_finite=False` skips the NaN/Inf scan (which touches every page of memory-mapped weights)
        for tensors already verified, e.g. sae_hub's own native copies of converted SAEs.
        """
        validate_tensors(cfg, tensors, source=source, check_finite=check_finite)
        target = dtype_from_str(dtype) if dtype is not None else cfg.dtype
        if target != cfg.dtype:
            cfg = cfg.replace(dtype=target)
        sae = cls(cfg, device="meta")
        state = {n: t.to(device=device, dtype=target) for n, t in tensors.items()}
        sae.load_state_dict(state, assign=True)
        return sae

    @classmethod
    def from_pretrained(
        cls,
        release_or_repo: str | os.PathLike[str],
        sae_id: str | None = None,
        *,
        revision: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> SAE:
        """Load an SAE from a registry release, any Hub repo (format detected) or a local folder.

        Example: `SAE.from_pretrained("gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71")`.
        """
        from sae_hub.loading import load_tensors

        loaded = load_tensors(
            release_or_repo,
            sae_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        return cls.from_tensors(
            loaded.cfg,
            loaded.tensors,
            device=device,
            dtype=dtype,
            source=loaded.source,
            check_finite=not loaded.verified,
        )

    def save_pretrained(self, save_directory: str | os.PathLike[str], *, format: str = "native") -> Path:
        """Write the SAE to a folder in `format` (native, saelens, sparsify, gemma-scope, dictionary-learning)."""
        from sae_hub.formats import write

        folder = Path(save_directory)
        write(format, self.cfg, self.state_tensors(), folder)
        return folder

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload weights, config and a model card to `repo_id` in one commit; return the commit URL."""
        from sae_hub.push import push_sae

        return push_sae(self, repo_id, **kwargs)

    def state_tensors(self) -> dict[str, Tensor]:
        """Return the canonical parameters as plain detached tensors, keyed by canonical name."""
        return {name: p.detach() for name, p in self.named_parameters()}

    # ---- properties ------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the parameters."""
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.W_enc.device

    @property
    def provenance(self) -> Provenance:
        """Model, hook point and source of this SAE."""
        return self.cfg.provenance

    def _apply(self, fn: Any, recurse: bool = True) -> SAE:  # keeps cfg.dtype in step with .to()/.half()
        super()._apply(fn, recurse)
        if self.W_enc.dtype != self.cfg.dtype and self.W_enc.is_floating_point():
            self.cfg = self.cfg.replace(dtype=self.W_enc.dtype)
        return self

    # ---- encoding --------------------------------------------------------------------------

    def normalize(self, x: Tensor) -> tuple[Tensor, NormStats]:
        """Apply the input scale and per-token normalisation; return the stats that undo it.

        Per-token statistics are computed in at least float32, so a bfloat16 SAE normalises as
        accurately as a float32 one; the normalised input comes back in the SAE's dtype.
        """
        if self.cfg.normalization == "none":
            return normalize(x.to(self.dtype), "none", self.cfg.input_scale)
        x_n, stats = normalize(
            x.to(torch.promote_types(self.dtype, torch.float32)),
            self.cfg.normalization,
            self.cfg.input_scale,
        )
        return x_n.to(self.dtype), stats

    def _pre_acts(self, x_n: Tensor) -> Tensor:
        """Pre-activations `(x - b_dec·apply) @ W_enc + b_enc` of a normalised input (gated: no bias)."""
        if self.cfg.apply_b_dec_to_input:
            x_n = x_n - self.b_dec
        if self.cfg.architecture == "gated":
            return x_n @ self.W_enc
        return torch.addmm(self.b_enc, x_n.reshape(-1, self.cfg.d_in), self.W_enc).reshape(
            *x_n.shape[:-1], self.cfg.d_sae
        )

    def _uses_topk(self) -> bool:
        cfg = self.cfg
        return cfg.architecture in ("topk", "abstopk") or (
            cfg.architecture == "batchtopk" and cfg.batchtopk_mode == "topk"
        )

    def _topk_code(self, pre: Tensor) -> SparseCode:
        """The k selected latents per token, for the top-k architectures."""
        k = self.cfg.k
        assert k is not None
        if self.cfg.architecture == "abstopk":
            _, idx = torch.topk(pre.abs(), k, dim=-1)
            return SparseCode(pre.gather(-1, idx), idx)
        if self.cfg.relu_before_topk or self.cfg.architecture == "batchtopk":
            vals, idx = torch.topk(torch.relu(pre), k, dim=-1)
            return SparseCode(vals, idx)
        vals, idx = torch.topk(pre, k, dim=-1)
        return SparseCode(torch.relu(vals), idx)

    def _masked_code(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """`(values, mask)` with features `where(mask, values, 0)`, for the elementwise architectures."""
        arch = self.cfg.architecture
        if arch == "gated":
            gate = (pre + self.b_gate) > 0
            mag = pre * torch.exp(self.r_mag) + self.b_mag
            return mag, gate & (mag > 0)
        if arch == "relu":
            return pre, pre > 0
        # jumprelu / batchtopk: relu(z)·1[z > θ] is non-zero exactly where z > max(θ, 0).
        return pre, pre > self.threshold.clamp_min(0)

    def _activate(self, pre: Tensor) -> Tensor:
        """Dense feature activations from pre-activations (gated: from `x @ W_enc`)."""
        if self._uses_topk():
            code = self._topk_code(pre)
            return torch.zeros_like(pre).scatter_(-1, code.indices, code.values)
        values, mask = self._masked_code(pre)
        return torch.where(mask, values, 0)

    def encode(self, x: Tensor) -> Tensor:
        """Return the dense feature activations `[..., d_sae]` of input activations `[..., d_in]`."""
        self._check_width(x, self.cfg.d_in, "input")
        x_n, _ = self.normalize(x)
        return self._activate(self._pre_acts(x_n))

    def encode_sparse(self, x: Tensor) -> SparseCode:
        """Return active latents as (values, indices) without building the dense `[..., d_sae]` code.

        Top-k architectures give exactly k entries per token (in descending order); the others give
        each token's active latents padded to the batch's largest L0 with zeros at index 0.
        """
        self._check_width(x, self.cfg.d_in, "input")
        x_n, _ = self.normalize(x)
        pre = self._pre_acts(x_n)
        if self._uses_topk():
            return self._topk_code(pre)
        values, mask = self._masked_code(pre)
        lead = pre.shape[:-1]
        flat = _sparse.select(values.reshape(-1, self.cfg.d_sae), mask.reshape(-1, self.cfg.d_sae))
        vals, idx = _sparse.pad_rows(flat)
        width = vals.shape[-1]
        return SparseCode(vals.reshape(*lead, width), idx.reshape(*lead, width))

    # ---- decoding --------------------------------------------------------------------------

    def decode(self, f: Tensor, stats: NormStats | None = None) -> Tensor:
        """Reconstruct from dense features; per-token normalisation is undone only when `stats` are given.

        The skip connection of a skip transcoder needs the input, so only `forward` adds it.
        """
        self._check_width(f, self.cfg.d_sae, "feature")
        y = _sparse.decode_mostly_zero(f.to(self.dtype), self.W_dec) + self.b_dec
        return denormalize(y, stats, self.cfg.output_scale).to(self.dtype)

    def decode_sparse(self, values: Tensor, indices: Tensor, stats: NormStats | None = None) -> Tensor:
        """Reconstruct from (values, indices) by gathering decoder rows (no dense matmul)."""
        if values.shape != indices.shape:
            raise ValueError(f"values {tuple(values.shape)} and indices {tuple(indices.shape)} differ")
        if values.ndim == 0:
            raise ValueError("values and indices need a last dimension of active latents")
        y = _sparse.gather_decode(values.to(self.dtype), indices, self.W_dec) + self.b_dec
        return denormalize(y, stats, self.cfg.output_scale).to(self.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Return the reconstruction (for transcoders: the predicted output activation).

        The decoder only gathers the rows of active latents when the code is sparse, so the dense
        encoder matmul is the only `[batch, d_sae]`-sized product; tokens go through in chunks so
        that product stays under about `FORWARD_CHUNK_ELEMENTS` elements for any batch.
        """
        self._check_width(x, self.cfg.d_in, "input")
        x_n, stats = self.normalize(x)
        flat = x_n.reshape(-1, self.cfg.d_in)
        rows = max(256, FORWARD_CHUNK_ELEMENTS // self.cfg.d_sae)
        if flat.shape[0] <= rows:
            y = self._reconstruct(flat)
        else:
            y = torch.cat([self._reconstruct(part) for part in flat.split(rows)])
        y = y.reshape(*x_n.shape[:-1], self.cfg.out_dim) + self.b_dec
        if self.cfg.skip_connection:
            y = y + x_n @ self.W_skip
        return denormalize(y, stats, self.cfg.output_scale).to(x.dtype)

    def _reconstruct(self, x_n: Tensor) -> Tensor:
        """`f(x_n) @ W_dec` (no bias) for a 2-D chunk of normalised inputs."""
        pre = self._pre_acts(x_n)
        if self._uses_topk():
            return _sparse.gather_decode(*self._topk_code(pre), self.W_dec)
        return _sparse.decode_masked(*self._masked_code(pre), self.W_dec)

    def error(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """Return `target - forward(x)`; `target` defaults to `x` (plain SAEs), required for transcoders."""
        if target is None:
            if self.cfg.is_transcoder:
                raise ValueError("a transcoder's error needs the output activation: pass target=")
            target = x
        return target - self(x)

    def _check_width(self, t: Tensor, width: int, what: str) -> None:
        if t.ndim == 0 or t.shape[-1] != width:
            raise ValueError(
                f"{what} has shape {tuple(t.shape)}; expected [..., {width}] for this SAE "
                f"(d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}, d_out={self.cfg.d_out})"
            )

    # ---- folds -----------------------------------------------------------------------------

    @torch.no_grad()
    def fold_W_dec_norm(self) -> SAE:
        """Rescale latents so every decoder row has unit norm; reconstructions are unchanged."""
        if self._uses_topk():
            raise ConfigError(
                f"fold_W_dec_norm would change which latents {self.cfg.architecture} selects "
                "(top-k compares raw activations); fold decoder norms before training instead",
                field="architecture",
            )
        norms = self.W_dec.norm(dim=-1).clamp_min(torch.finfo(self.dtype).tiny)
        self.W_dec /= norms[:, None]
        self.W_enc *= norms
        for name in ("b_enc", "threshold", "b_gate", "b_mag"):
            if hasattr(self, name):
                getattr(self, name).mul_(norms)
        return self

    @torch.no_grad()
    def fold_normalization(self) -> SAE:
        """Fold the constant input/output scales into the weights (forward unchanged, scales become 1)."""
        cfg = self.cfg
        s_in, s_out = float(cfg.input_scale), float(cfg.output_scale)
        if s_in == 1.0 and s_out == 1.0:
            return self
        if cfg.normalization != "none":
            raise ConfigError(
                f"cannot fold constant scales together with per-token normalization {cfg.normalization!r}",
                field="normalization",
            )
        apply_b_dec = cfg.apply_b_dec_to_input
        if apply_b_dec and s_in != s_out:
            self._fold_pre_bias()
            apply_b_dec = False
        self.W_enc *= s_in
        if apply_b_dec:  # s_in == s_out: the pre-bias and output bias scale together
            self.b_dec /= s_in
        else:
            self.b_dec /= s_out
        self.W_dec /= s_out
        if cfg.skip_connection:
            self.W_skip *= s_in / s_out
        self.cfg = cfg.replace(input_scale=1.0, output_scale=1.0, apply_b_dec_to_input=apply_b_dec)
        return self

    @torch.no_grad()
    def _fold_pre_bias(self) -> None:
        """Fold `x - b_dec` into the encoder bias: `b_enc' = b_enc - b_dec @ W_enc`."""
        shift = self.b_dec @ self.W_enc
        target = self.b_gate if self.cfg.architecture == "gated" else self.b_enc
        target -= shift
        if self.cfg.architecture == "gated":
            self.b_mag -= shift * torch.exp(self.r_mag)
        self.cfg = self.cfg.replace(apply_b_dec_to_input=False)

    def fold_pre_bias(self) -> SAE:
        """Remove `apply_b_dec_to_input` by folding it into the encoder bias (outputs unchanged)."""
        if self.cfg.apply_b_dec_to_input:
            self._fold_pre_bias()
        return self

    def extra_repr(self) -> str:
        c = self.cfg
        k = f", k={c.k}" if c.k is not None else ""
        return f"{c.architecture}, d_in={c.d_in}, d_sae={c.d_sae}, d_out={c.d_out}{k}, dtype={c.dtype}"
