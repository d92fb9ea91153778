"""Stream one completion as it is generated: `generate` runs in a thread, the text grows in the caller.

A failure inside `generate` ends the stream and is raised in the caller, so the UI can report it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor


def stream_generation(
    model: Any,
    tokenizer: Any,
    ids: Tensor,
    steering: Any,
    *,
    temperature: float,
    seed: int,
    max_new_tokens: int,
) -> Iterator[str]:
    """Yield the completion of `ids` so far after each new piece (steered when `steering` is given)."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
    failure: list[BaseException] = []
    sample = temperature > 0
    kwargs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "max_new_tokens": max_new_tokens,
        "do_sample": sample,
        "temperature": temperature if sample else None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
        "streamer": streamer,
    }

    def run() -> None:
        try:
            torch.manual_seed(seed)
            with torch.no_grad():
                if steering is None:
                    model.generate(**kwargs)
                else:
                    with steering.apply(model, tokenizer=tokenizer):
                        model.generate(**kwargs)
        except BaseException as exc:  # handed to the caller after the streamer ends
            failure.append(exc)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text
    worker.join()
    if failure:
        raise failure[0]
    yield text
