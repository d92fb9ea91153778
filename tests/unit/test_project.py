"""Project-level checks: the public API, import hygiene, README commands and CI agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sae_hub

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_imports():
    assert sae_hub.__all__ == sorted(sae_hub.__all__)
    for name in sae_hub.__all__:
        assert getattr(sae_hub, name) is not None, name


def test_import_does_not_pull_heavy_dependencies():
    code = (
        "import sys, sae_hub; "
        "heavy = [m for m in ('transformers', 'accelerate', 'gradio', 'wandb') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _bash_blocks(text: str) -> list[str]:
    blocks, inside, current = [], False, []
    for line in text.splitlines():
        if line.startswith("```bash"):
            inside, current = True, []
        elif line.startswith("```") and inside:
            inside = False
            blocks.append("\n".join(current).strip())
        elif inside:
            current.append(line)
    return blocks


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = _bash_blocks(readme)
    assert len(blocks) >= 2
    test_command = blocks[1]
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
    assert "pytest" in test_command
    assert "sae-hub" in blocks[0]
