"""sae-lens loads our SAELens-format exports and we load files sae-lens wrote; outputs must agree."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from sae_hub import SAE, SAEConfig
from sae_hub.formats import read

sae_lens = pytest.importorskip("sae_lens")

pytestmark = pytest.mark.interop

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _x(d_in: int) -> torch.Tensor:
    return torch.randn(32, d_in, generator=torch.Generator().manual_seed(0)) * 2 + 0.3


def _randomize(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            if name == "threshold":
                p.abs_()


def _load_saelens(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sae_lens.SAE.load_from_disk(str(path))


OURS = [
    ("relu", {"apply_b_dec_to_input": True}, "standard"),
    ("relu", {"normalization": "constant_norm_rescale"}, "standard"),
    ("topk", {"k": 6, "apply_b_dec_to_input": True}, "topk"),
    ("topk", {"k": 6, "normalization": "layer_norm", "apply_b_dec_to_input": True}, "topk"),
    ("abstopk", {"k": 6}, "abstopk"),
    ("jumprelu", {}, "jumprelu"),
    ("batchtopk", {"k": 6}, "jumprelu"),
    ("gated", {"apply_b_dec_to_input": True}, "gated"),
    ("relu", {"d_out": 24}, "transcoder"),
    ("relu", {"skip_connection": True}, "skip_transcoder"),
    ("jumprelu", {"d_out": 24}, "jumprelu_transcoder"),
    ("jumprelu", {"skip_connection": True}, "jumprelu_skip_transcoder"),
]


@pytest.mark.parametrize(("arch", "kw", "theirs"), OURS)
def test_saelens_loads_our_exports(tmp_path: Path, arch: str, kw: dict, theirs: str) -> None:
    ours = SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw))
    _randomize(ours, 1)
    ours.cfg = ours.cfg.with_provenance(model="gpt2", hook="blocks.2.hook_resid_pre")
    ours.save_pretrained(tmp_path, format="saelens")
    peer = _load_saelens(tmp_path)
    assert peer.cfg.architecture() == theirs
    assert peer.cfg.metadata.hook_name == "blocks.2.hook_resid_pre"
    x = _x(16)
    with torch.no_grad():
        f = peer.encode(x)
        torch.testing.assert_close(f, ours.encode(x), **TOL)
        torch.testing.assert_close(peer(x), ours(x), **TOL)
        if ours.cfg.normalization == "none":
            torch.testing.assert_close(peer.decode(f), ours.decode(f), **TOL)


THEIRS = [
    ("standard", {}),
    ("standard", {"apply_b_dec_to_input": False}),
    ("topk", {"k": 6}),
    ("topk", {"k": 6, "rescale_acts_by_decoder_norm": True}),
    ("topk", {"k": 6, "normalize_activations": "layer_norm"}),
    ("jumprelu", {}),
    ("gated", {}),
    ("abstopk", {"k": 6}),
    ("jumprelu_skip_transcoder", {"d_out": 16, "apply_b_dec_to_input": False}),
    ("transcoder", {"d_out": 24, "apply_b_dec_to_input": False}),
]


@pytest.mark.parametrize(("arch", "kw"), THEIRS)
def test_we_load_files_saelens_wrote(tmp_path: Path, arch: str, kw: dict) -> None:
    cfg = {"architecture": arch, "d_in": 16, "d_sae": 64, "dtype": "float32", "device": "cpu", **kw}
    cfg["metadata"] = {"model_name": "gpt2-small", "hook_name": "blocks.4.hook_resid_post"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = sae_lens.SAE.from_dict(cfg)
    _randomize(peer, 2)
    peer.save_model(str(tmp_path))
    loaded_cfg, tensors, fmt = read(tmp_path)
    assert fmt == "saelens"
    assert loaded_cfg.provenance.hook == "blocks.4.hook_resid_post"
    ours = SAE.from_tensors(loaded_cfg, tensors)
    x = _x(16)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), peer.encode(x), **TOL)
        torch.testing.assert_close(ours(x), peer(x), **TOL)
