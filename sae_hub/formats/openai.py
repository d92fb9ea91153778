"""OpenAI GPT-2 small SAEs (`openai/sparse_autoencoder`): one torch pickle `{layer}.pt` per SAE.

Files live at `gpt2-small/{location}[_v4|_v5_32k|_v5_128k]/autoencoders/{layer}.pt` and hold the
`Autoencoder.state_dict()`: `pre_bias [d_in]`, `encoder.weight [d_sae, d_in]`, `latent_bias [d_sae]`,
`decoder.weight [d_in, d_sae]`, the buffers `stats_last_nonzero`, `latents_activation_frequency`,
`latents_mean_square`, and the non-tensors `activation` (`"ReLU"` or `"TopK"`) and
`activation_state_dict` (`{"k": 32, "postact_fn": "ReLU"}` for TopK). They are loaded with
`torch.load(weights_only=True)`. Math: `pre = (x - pre_bias) @ encoder.weightᵀ + latent_bias`, ReLU
(v1/v4) or top-k of `pre` followed by ReLU (v5), `x̂ = f @ decoder.weightᵀ + pre_bias`; TopK files
also standardise each token (mean, unbiased std + 1e-5) and undo it on the output, which is
`normalization="layer_norm"`. So `b_dec = pre_bias` with `apply_b_dec_to_input=True`. Location,
version and layer are only in the path; the reader maps the location to its TransformerLens hook.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hub.config import Provenance, SAEConfig
from sae_hub.errors import FormatError
from sae_hub.formats._common import (
    from_linear,
    load_torch_state,
    names_of,
    prefix,
    prepared,
    refuse,
    save_torch_state,
    single_file,
    tensor,
    with_pre_bias,
)

NAME = "openai"
_FILE_RE = r"\d+\.pt"
_HOOKS = {
    "mlp_post_act": "blocks.{L}.mlp.hook_post",
    "resid_delta_attn": "blocks.{L}.hook_attn_out",
    "resid_post_attn": "blocks.{L}.hook_resid_mid",
    "resid_delta_mlp": "blocks.{L}.hook_mlp_out",
    "resid_post_mlp": "blocks.{L}.hook_resid_post",
}
_BUFFERS = ("stats_last_nonzero", "latents_activation_frequency", "latents_mean_square")


def detect(files: Sequence[str]) -> bool:
    """True for a `{layer}.pt` file with no config beside it."""
    names = names_of(files)
    return any(re.fullmatch(_FILE_RE, n) for n in names) and not names & {
        "config.json",
        "config.yaml",
        "cfg.json",
    }


def files_for(sae_id: str | None) -> list[str]:
    """The SAE id is the file itself (`.../autoencoders/{layer}.pt`) or its folder."""
    if sae_id and sae_id.endswith(".pt"):
        return [sae_id.strip("/")]
    return [prefix(sae_id) + "*.pt"]


def _path_provenance(path: Path) -> Provenance:
    layer = int(path.stem)
    location = version = None
    parts = path.parts
    # `.../{location}_{version}/autoencoders/{layer}.pt`, possibly below extra cache folders
    where = [i for i, part in enumerate(parts[:-1]) if part == "autoencoders"]
    if where and where[-1] >= 1:
        m = re.fullmatch(r"(?P<loc>[a-z_]+?)(?:_(?P<ver>v4|v5_32k|v5_128k))?", parts[where[-1] - 1])
        if m:
            location, version = m.group("loc"), m.group("ver") or "v1"
    hook = _HOOKS[location].format(L=layer) if location in _HOOKS else None
    extra = {k: v for k, v in (("location", location), ("version", version)) if v}
    model = "openai-community/gpt2" if "gpt2-small" in parts else None
    return Provenance(model=model, hook=hook, layer=layer, source_format=NAME, extra=extra)


def read(path: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read a `{layer}.pt` file (or the folder holding exactly one) into canonical form."""
    file = single_file(Path(path), (".pt",), _FILE_RE)
    state = load_torch_state(file)
    enc = tensor(state, "encoder.weight", file, ndim=2)
    dec = tensor(state, "decoder.weight", file, ndim=2)
    d_sae, d_in = enc.shape
    if tuple(dec.shape) != (d_in, d_sae):
        raise FormatError(
            f"decoder.weight has shape {tuple(dec.shape)}; expected {(d_in, d_sae)}", path=str(file)
        )
    activation = state.get("activation", "ReLU")
    act_state: Any = state.get("activation_state_dict") or {}
    if activation == "TopK":
        k = act_state.get("k") if isinstance(act_state, dict) else None
        if not isinstance(k, int) or act_state.get("postact_fn", "ReLU") != "ReLU":
            raise FormatError(
                f"TopK activation_state_dict {act_state!r} needs an int k and postact_fn ReLU", path=str(file)
            )
        arch: dict[str, Any] = {"architecture": "topk", "k": k, "normalization": "layer_norm"}
    elif activation == "ReLU":
        arch = {"architecture": "relu"}
    else:
        raise FormatError(
            f"activation {activation!r} is not supported; expected 'ReLU' or 'TopK'",
            path=str(file),
            key="activation",
        )
    tensors = from_linear(
        enc, tensor(state, "latent_bias", file, ndim=1), dec, tensor(state, "pre_bias", file, ndim=1)
    )
    cfg = SAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        apply_b_dec_to_input=True,
        dtype=enc.dtype,
        provenance=_path_provenance(file),
        **arch,
    )
    return cfg, tensors


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write `{layer}.pt` (layer 0 when unknown): ReLU without normalisation or TopK with layer_norm."""
    topk = cfg.architecture == "topk" or (cfg.architecture == "batchtopk" and cfg.batchtopk_mode == "topk")
    if cfg.is_transcoder:
        raise refuse(
            NAME, "OpenAI autoencoders reconstruct their input (no transcoders or skip connections)", "d_out"
        )
    if topk and cfg.normalization != "layer_norm":
        raise refuse(
            NAME,
            "TopK files always standardise their input; this SAE does not (normalization)",
            "normalization",
        )
    if not topk and (cfg.architecture != "relu" or cfg.normalization != "none"):
        raise refuse(
            NAME,
            f"only ReLU without normalisation or TopK with layer_norm exist; got {cfg.architecture} with {cfg.normalization}",
            "architecture",
        )
    cfg, tensors = with_pre_bias(*prepared(cfg, tensors))

    state: dict[str, Any] = {
        "pre_bias": tensors["b_dec"],
        "encoder.weight": tensors["W_enc"].T,
        "latent_bias": tensors["b_enc"],
        "decoder.weight": tensors["W_dec"].T,
        "stats_last_nonzero": torch.zeros(cfg.d_sae, dtype=torch.int64),
        "latents_activation_frequency": torch.zeros(cfg.d_sae, dtype=cfg.dtype),
        "latents_mean_square": torch.zeros(cfg.d_sae, dtype=cfg.dtype),
        "activation": "TopK" if topk else "ReLU",
        "activation_state_dict": {"k": cfg.k, "postact_fn": "ReLU"} if topk else {},
    }
    layer = cfg.provenance.layer if cfg.provenance.layer is not None else 0
    save_torch_state(state, Path(folder) / f"{layer}.pt")
