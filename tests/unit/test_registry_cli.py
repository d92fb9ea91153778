"""`sae-hub list`, run through the real entry point."""

from __future__ import annotations

from sae_hub.cli import main


def test_list_by_model_prints_a_table(capsys):
    assert main(["list", "--model", "meta-llama/Llama-3.1-8B"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RELEASE", "REPO", "MODEL", "FORMAT", "SAES"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows["llama_scope_lxtc_8x"] == [
        "llama_scope_lxtc_8x",
        "fnlp/Llama3_1-8B-Base-LXTC-8x",
        "meta-llama/Llama-3.1-8B",
        "llama-scope",
        "32",
    ]
    assert lines[-1] == f"{len(rows)} releases, {sum(int(r[-1]) for r in rows.values())} SAEs"


def test_list_filters_by_site_and_layer(capsys):
    assert main(["list", "--model", "google/gemma-2-2b", "--site", "transcoder", "--layer", "3"]) == 0
    out = capsys.readouterr().out
    assert "gemma-scope-2b-pt-transcoders " in out
    assert "gemma-scope-2b-pt-res " not in out
    assert out.splitlines()[-1].startswith("1 releases, 1 SAEs")


def test_list_marks_unloadable_formats_and_reports_no_match(capsys):
    assert main(["list", "--model", "Qwen/Qwen3-8B-Base"]) == 0
    assert "qwen-scope (not loadable yet)" in capsys.readouterr().out
    assert main(["list", "--model", "no/such-model"]) == 1
    assert "no releases match" in capsys.readouterr().out
