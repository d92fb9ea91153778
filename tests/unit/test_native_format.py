"""The native format: bit-exact round trips, atomic writes, clear errors, and a zero-copy load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import native

ARCHS = [
    {"architecture": "relu", "apply_b_dec_to_input": True},
    {
        "architecture": "jumprelu",
        "provenance": {"model": "google/gemma-2-2b", "hook": "blocks.20.hook_resid_post"},
    },
    {"architecture": "topk", "k": 4, "normalization": "layer_norm"},
    {"architecture": "batchtopk", "batchtopk_mode": "topk", "k": 3},
    {"architecture": "gated"},
    {"architecture": "abstopk", "k": 2, "input_scale": 3.0, "output_scale": 2.0},
    {"architecture": "jumprelu", "d_out": 6, "skip_connection": True},
]


def _random_sae(dtype: torch.dtype, **kw) -> SAE:
    sae = SAE(SAEConfig(d_in=8, d_sae=32, dtype=dtype, **kw))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return sae


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kw", ARCHS, ids=lambda kw: kw["architecture"])
def test_round_trip_is_bit_exact(tmp_path: Path, dtype: torch.dtype, kw: dict) -> None:
    sae = _random_sae(dtype, **kw)
    sae.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = SAE.from_pretrained(tmp_path)
    assert loaded.cfg == sae.cfg.with_provenance(source_format="native")
    assert loaded.dtype == dtype
    for name, t in sae.state_tensors().items():
        got = loaded.state_tensors()[name]
        assert got.dtype == t.dtype
        assert torch.equal(
            got.view(torch.int16 if t.element_size() == 2 else torch.int32),
            t.view(torch.int16 if t.element_size() == 2 else torch.int32),
        ), name
    x = torch.randn(3, 8)
    assert torch.equal(loaded(x), sae(x))


def test_config_file_is_versioned_and_readable(tmp_path: Path) -> None:
    _random_sae(torch.float32, architecture="jumprelu").save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["format_version"] == 1
    assert data["architecture"] == "jumprelu"
    assert data["dtype"] == "float32"
    assert "sae_hub_version" in data
    header = safetensors.safe_open(str(tmp_path / "model.safetensors"), "pt")
    assert sorted(header.keys()) == ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]
    assert header.metadata() == {"format": "pt"}


def test_load_into_other_dtype_and_sae_id_subfolder(tmp_path: Path) -> None:
    sae = _random_sae(torch.float32, architecture="relu")
    sae.save_pretrained(tmp_path / "layer_3")
    loaded = SAE.from_pretrained(tmp_path, "layer_3", dtype=torch.bfloat16)
    assert loaded.dtype == loaded.cfg.dtype == torch.bfloat16
    assert torch.equal(loaded.W_enc, sae.W_enc.detach().bfloat16())


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    _random_sae(torch.float32, architecture="relu").save_pretrained(tmp_path)
    second = _random_sae(torch.float16, architecture="topk", k=2)
    second.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert SAE.from_pretrained(tmp_path).cfg.architecture == "topk"


def _write(folder: Path, cfg: SAEConfig, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {n: t.contiguous() for n, t in tensors.items()}, str(folder / "model.safetensors")
    )
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    return folder


def _good_tensors(cfg: SAEConfig) -> dict[str, torch.Tensor]:
    return {n: torch.ones(p.shape) for n, p in SAE(cfg, device="meta").named_parameters()}


def test_shape_mismatch_names_both_shapes(tmp_path: Path) -> None:
    cfg = SAEConfig(d_in=8, d_sae=32, architecture="jumprelu")
    tensors = {**_good_tensors(cfg), "W_enc": torch.ones(8, 16)}
    folder = _write(tmp_path, cfg, tensors)
    with pytest.raises(FormatError, match=r"W_enc.*\(8, 16\).*\(8, 32\)") as info:
        SAE.from_pretrained(folder)
    assert info.value.key == "W_enc"


def test_missing_threshold_for_jumprelu(tmp_path: Path) -> None:
    cfg = SAEConfig(d_in=8, d_sae=32, architecture="jumprelu")
    tensors = _good_tensors(cfg)
    del tensors["threshold"]
    with pytest.raises(FormatError, match=r"jumprelu.*missing \['threshold'\]"):
        SAE.from_pretrained(_write(tmp_path, cfg, tensors))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_name_the_tensor(tmp_path: Path, bad: float) -> None:
    cfg = SAEConfig(d_in=8, d_sae=32, architecture="relu")
    tensors = _good_tensors(cfg)
    tensors["b_dec"][3] = bad
    with pytest.raises(FormatError, match=r"b_dec.*NaN or Inf") as info:
        SAE.from_pretrained(_write(tmp_path, cfg, tensors))
    assert info.value.key == "b_dec"


def test_integer_tensor_is_refused(tmp_path: Path) -> None:
    cfg = SAEConfig(d_in=8, d_sae=32, architecture="relu")
    tensors = {**_good_tensors(cfg), "b_enc": torch.ones(32, dtype=torch.int32)}
    with pytest.raises(FormatError, match=r"b_enc.*int32.*floating-point"):
        SAE.from_pretrained(_write(tmp_path, cfg, tensors))


def test_bad_config_files(tmp_path: Path) -> None:
    cfg = SAEConfig(d_in=8, d_sae=32, architecture="topk", k=4)
    folder = _write(tmp_path, cfg, _good_tensors(cfg))
    data = cfg.to_dict()
    (folder / "config.json").write_text(json.dumps({**data, "k": 33}))
    with pytest.raises(ConfigError, match=r"k must be.*33.*config\.json") as info:
        SAE.from_pretrained(folder)
    assert info.value.field == "k"
    (folder / "config.json").write_text(json.dumps({**data, "dtype": "int8"}))
    with pytest.raises(ConfigError, match="int8"):
        SAE.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        native.read_config(folder)


def test_truncated_weights_file(tmp_path: Path) -> None:
    _random_sae(torch.float32, architecture="relu").save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FormatError, match="truncated"):
        SAE.from_pretrained(tmp_path)


_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from sae_hub import SAE

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    base = status("VmRSS")
    sae = SAE.from_pretrained(sys.argv[1])
    assert sae.W_enc.sum().isfinite()
    print(json.dumps({"base": base, "peak": status("VmHWM")}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc peak-RSS reset")
def test_load_peak_memory_within_1_25x_weights(tmp_path: Path) -> None:
    sae = SAE(SAEConfig(d_in=1024, d_sae=8192, architecture="jumprelu"))  # 64 MiB of float32 weights
    sae.save_pretrained(tmp_path)
    weight_bytes = sum(t.numel() * t.element_size() for t in sae.state_tensors().values())
    assert weight_bytes > 64 * 2**20
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    grown = rss["peak"] - rss["base"]
    assert grown <= 1.25 * weight_bytes, f"load grew peak RSS by {grown / weight_bytes:.2f}x the weights"


def test_save_over_the_folder_it_was_loaded_from(tmp_path: Path) -> None:
    """Loaded tensors are memory-mapped; the atomic rename keeps them valid while the file is replaced."""
    sae = _random_sae(torch.float32, architecture="jumprelu")
    sae.save_pretrained(tmp_path)
    loaded = SAE.from_pretrained(tmp_path)
    loaded.fold_W_dec_norm()  # writes into the copy-on-write mapping, never into the file
    x = torch.randn(4, 8)
    expected = loaded(x)
    loaded.save_pretrained(tmp_path)
    again = SAE.from_pretrained(tmp_path)
    assert torch.equal(again(x), expected)
    torch.testing.assert_close(again.W_dec.norm(dim=-1), torch.ones(32))
