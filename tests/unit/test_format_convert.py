"""`sae-hub convert` and `SAE.save_pretrained(format=...)` across formats, through `main(argv)`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures.layouts import BUILDERS, build_gemma_scope, build_openai, build_sparsify
from fixtures.reference import inputs

from sae_hub import SAE, SAEConfig
from sae_hub.cli import main
from sae_hub.errors import ConfigError
from sae_hub.formats import ADAPTERS, read


def _same_outputs(a: SAE, b: SAE) -> None:
    x = inputs(a.cfg.d_in).float()
    torch.testing.assert_close(a.encode(x), b.encode(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", ["native", "saelens", "gemma-scope", "dictionary-learning"])
def test_convert_gemma_scope(tmp_path: Path, target: str, capsys) -> None:
    raw = build_gemma_scope(tmp_path / "src")
    dst = tmp_path / "out"
    assert main(["convert", str(raw.path), str(dst), "--to", target]) == 0
    assert f"({target})" in capsys.readouterr().out
    cfg, tensors, fmt = read(dst)
    assert fmt == target
    _same_outputs(SAE.from_pretrained(raw.path), SAE.from_tensors(cfg, tensors))


@pytest.mark.parametrize("target", ["native", "saelens", "sparsify", "dictionary-learning"])
def test_convert_sparsify(tmp_path: Path, target: str) -> None:
    raw = build_sparsify(tmp_path / "src")
    dst = tmp_path / "out"
    assert main(["convert", str(tmp_path / "src"), str(dst), "--sae-id", "layers.10", "--to", target]) == 0
    _same_outputs(SAE.from_pretrained(raw.path), SAE.from_pretrained(dst))


def test_convert_a_weights_file(tmp_path: Path) -> None:
    raw = build_openai(tmp_path / "src")
    assert main(["convert", str(raw.path), str(tmp_path / "out"), "--to", "saelens"]) == 0
    cfg, tensors, _ = read(raw.path)
    _same_outputs(SAE.from_tensors(cfg, tensors), SAE.from_pretrained(tmp_path / "out"))


def test_refusal_is_a_clean_error(tmp_path: Path, capsys) -> None:
    raw = build_openai(tmp_path / "src")  # TopK with layer_norm: no Gemma Scope equivalent
    assert main(["convert", str(raw.path), str(tmp_path / "out"), "--to", "gemma-scope"]) == 2
    assert "cannot represent" in capsys.readouterr().err


def test_non_empty_destination_needs_force(tmp_path: Path, capsys) -> None:
    raw = build_gemma_scope(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert main(["convert", str(raw.path), str(tmp_path / "out"), "--to", "native"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["convert", str(raw.path), str(tmp_path / "out"), "--to", "native", "--force"]) == 0


def test_every_format_reads_its_fixture_and_every_writer_is_registered(tmp_path: Path) -> None:
    assert set(BUILDERS) | {"native"} == set(ADAPTERS)
    for name, build in BUILDERS.items():
        raw = build(tmp_path / name)
        assert read(raw.path)[2] == name
        for pattern in ADAPTERS[name].files_for(raw.path_in_repo):
            assert not pattern.startswith("/")


def test_convert_offers_every_writable_format() -> None:
    from sae_hub.cli.convert import WRITABLE

    assert set(WRITABLE) == {name for name, m in ADAPTERS.items() if hasattr(m, "write")}


def test_convert_a_hub_repo(tmp_path: Path, make_repo) -> None:
    """A remote SRC goes through SAE.from_pretrained (the loopback Hub, the real client)."""
    raw = build_gemma_scope(tmp_path / "repo", "layer_3/width_16k/average_l0_40")
    make_repo("fixture-org/convert-src", {f: (raw.root / f).read_bytes() for f in raw.files})
    dst = tmp_path / "out"
    argv = ["convert", "fixture-org/convert-src", str(dst), "--sae-id", raw.path_in_repo, "--to", "saelens"]
    assert main(argv) == 0
    _same_outputs(SAE.from_pretrained(raw.path), SAE.from_pretrained(dst))


def _variant(arch: str, extra: dict) -> SAE:
    kw = {"k": 5} if arch in ("topk", "abstopk", "batchtopk") else {}
    sae = SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw, **extra))
    gen = torch.Generator().manual_seed(13)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            if name == "threshold":
                p.copy_(p.abs() if arch == "jumprelu" else torch.full_like(p, 0.2))
    return sae


VARIANTS = [
    {},
    {"apply_b_dec_to_input": True},
    {"normalization": "layer_norm", "apply_b_dec_to_input": True},
    {"normalization": "constant_norm_rescale"},
    {"input_scale": 2.0, "output_scale": 0.5, "apply_b_dec_to_input": True},
    {"d_out": 24},
    {"skip_connection": True},
]


@pytest.mark.parametrize(
    "fmt", sorted(n for n, m in ADAPTERS.items() if hasattr(m, "write") and n != "native")
)
def test_every_write_either_refuses_or_preserves_the_math(tmp_path: Path, fmt: str) -> None:
    """No silent change: each (architecture, options) is refused with a reason or reads back equal."""
    written, refusals = 0, []
    for arch in ("relu", "jumprelu", "topk", "batchtopk", "gated", "abstopk"):
        for i, extra in enumerate(VARIANTS):
            try:
                sae = _variant(arch, extra)
            except ConfigError:
                continue  # not a valid SAE (e.g. layer_norm with d_out != d_in)
            folder = tmp_path / f"{arch}-{i}"
            try:
                sae.save_pretrained(folder, format=fmt)
            except ConfigError as exc:
                refusals.append(str(exc))
                continue
            cfg, tensors, got = read(folder)
            assert got == fmt
            _same_outputs(sae, SAE.from_tensors(cfg, tensors))
            written += 1
    assert written >= 2
    assert all("cannot represent" in r for r in refusals), refusals
