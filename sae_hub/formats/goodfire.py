"""Goodfire SAEs (`Goodfire/Llama-3.3-70B-Instruct-SAE-l50`, `...-8B-Instruct-SAE-l19`): a `.pt`/`.pth` + `config.yaml`.

The repo root holds one torch pickle (e.g. `Llama-3.1-8B-Instruct-SAE-l19.pth`) whose float32
state dict has `encoder_linear.weight [d_sae, d_in]`, `encoder_linear.bias [d_sae]`,
`decoder_linear.weight [d_in, d_sae]` and `decoder_linear.bias [d_in]` (`nn.Linear` orientation, so
both weights are transposed), next to a small `config.yaml` whose contents are kept in
`provenance.extra` (an integer `layer` and a `model` string are used when present). Math:
`f = relu(x @ encoder_linear.weightᵀ + encoder_linear.bias)`, `x̂ = f @ decoder_linear.weightᵀ +
decoder_linear.bias`: ReLU, no pre-bias, no normalisation. The layer also appears in the file name
(`-l19`, or `model.layers.50` in the original name). Loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from sae_hub._io import write_text_atomic
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
)

NAME = "goodfire"
CONFIG_FILE = "config.yaml"
WRITTEN_FILE = "sae.pt"


def detect(files: Sequence[str]) -> bool:
    """True when a `.pt`/`.pth` file sits next to `config.yaml`."""
    names = names_of(files)
    return CONFIG_FILE in names and any(n.endswith((".pt", ".pth")) for n in names)


def files_for(sae_id: str | None) -> list[str]:
    """The SAE id is the weights file; its `config.yaml` sits in the same folder."""
    sae_id = (sae_id or "").strip("/")
    if sae_id.endswith((".pt", ".pth")):
        parent = sae_id.rpartition("/")[0]
        return [sae_id, prefix(parent) + CONFIG_FILE]
    return [prefix(sae_id) + "*.pt", prefix(sae_id) + "*.pth", prefix(sae_id) + CONFIG_FILE]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FormatError(f"not valid YAML ({exc})", path=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FormatError(f"expected a YAML mapping, got {type(data).__name__}", path=str(path))
    return data


def read(path: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read the weights file (or the folder holding exactly one) into a canonical ReLU SAE."""
    file = single_file(Path(path), (".pt", ".pth"))
    extra = _read_yaml(file.parent / CONFIG_FILE)
    state = load_torch_state(file)
    enc = tensor(state, "encoder_linear.weight", file, ndim=2)
    dec = tensor(state, "decoder_linear.weight", file, ndim=2)
    d_sae, d_in = enc.shape
    if dec.shape[1] != d_sae:
        raise FormatError(
            f"decoder_linear.weight has shape {tuple(dec.shape)}; expected [d_out, {d_sae}]", path=str(file)
        )
    tensors = from_linear(
        enc,
        tensor(state, "encoder_linear.bias", file, ndim=1),
        dec,
        tensor(state, "decoder_linear.bias", file, ndim=1),
    )
    layer = extra.get("layer")
    if not isinstance(layer, int) or isinstance(layer, bool):
        m = re.search(r"(?:-l|layers\.)(\d+)(?:\.|$)", file.stem)
        layer = int(m.group(1)) if m else None
    model = extra.get("model") if isinstance(extra.get("model"), str) else None
    hook = extra.get("hook") if isinstance(extra.get("hook"), str) else None
    prov = Provenance(
        model=model, hook=hook, layer=layer, source_format=NAME, extra={"config": extra, "file": file.name}
    )
    cfg = SAEConfig(
        d_in=int(d_in), d_sae=int(d_sae), d_out=int(dec.shape[0]), dtype=enc.dtype, provenance=prov
    )
    return cfg, tensors


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write `sae.pt` + `config.yaml` for a ReLU SAE (pre-bias and constant scales folded)."""
    if cfg.architecture != "relu":
        raise refuse(NAME, f"Goodfire SAEs are ReLU; {cfg.architecture} is not representable", "architecture")
    if cfg.normalization != "none" or cfg.skip_connection:
        raise refuse(NAME, "no input normalisation or skip connection can be recorded", "normalization")
    cfg, tensors = prepared(cfg, tensors, fold_pre_bias=True)

    state = {
        "encoder_linear.weight": tensors["W_enc"].T,
        "encoder_linear.bias": tensors["b_enc"],
        "decoder_linear.weight": tensors["W_dec"].T,
        "decoder_linear.bias": tensors["b_dec"],
    }
    prov = cfg.provenance
    meta = {
        k: v for k, v in (("model", prov.model), ("hook", prov.hook), ("layer", prov.layer)) if v is not None
    }
    meta.update(d_in=cfg.d_in, d_sae=cfg.d_sae)
    folder = Path(folder)
    save_torch_state(state, folder / WRITTEN_FILE)
    write_text_atomic(folder / CONFIG_FILE, yaml.safe_dump(meta, sort_keys=True))
