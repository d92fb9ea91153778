"""`sae-hub convert` and `SAE.save_pretrained(format=...)` across formats, through `main(argv)`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures.layouts import BUILDERS, build_gemma_scope, build_openai, build_sparsify
from fixtures.reference import inputs

from sae_hub import SAE
from sae_hub.cli import main
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
