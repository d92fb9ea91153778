"""One builder per release family: SAELens's entries (or our pattern rules) -> release mappings.

The builders live by where their facts come from: `registry_from_saelens.py` for families SAELens
lists, `registry_from_patterns.py` for those it lists only partly or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from registry_from_patterns import llama_scope, openai, sparsify
from registry_from_saelens import (
    dictionary_learning,
    gemma_scope,
    gemma_scope_2,
    goodfire,
    saelens_native,
    unsupported,
)

FAMILIES: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "gemma_scope": gemma_scope,
    "gemma_scope_2": gemma_scope_2,
    "llama_scope": llama_scope,
    "openai": openai,
    "saelens": saelens_native,
    "dictionary_learning": dictionary_learning,
    "goodfire": goodfire,
    "sparsify": sparsify,
    "unsupported": unsupported,
}
