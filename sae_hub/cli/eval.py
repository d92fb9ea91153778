"""`sae-hub eval`: splice an SAE into its model, print reconstruction and LM-loss metrics, write JSON.

Example: `sae-hub eval ./my_sae --texts texts.txt --hook blocks.10.hook_resid_post --plot density.png`
(`--texts` is a text file, one document per line, or JSON lines with a "text" field).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from sae_hub.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sae", help="registry release, Hub repo id or local folder of the SAE")
    parser.add_argument("sae_id", nargs="?", default=None, help="SAE id inside the release or repo")
    parser.add_argument("--texts", required=True, type=Path, help="text file (one per line) or .jsonl")
    parser.add_argument(
        "--model", default="embedded", help="transformers model id or path (default: embedded)"
    )
    parser.add_argument("--hook", default=None, help="hook point (default: the SAE's provenance hook)")
    parser.add_argument("--revision", default=None, help="SAE repo revision")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text (truncated)")
    parser.add_argument("--max-texts", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")
    parser.add_argument(
        "--output", type=Path, default=Path("eval.json"), help="JSON results (default eval.json)"
    )
    parser.add_argument("--plot", type=Path, default=None, help="also write a feature-density histogram PNG")


def read_texts(path: Path) -> list[str]:
    """Read documents from a text file (one per line) or JSON lines with a "text" field; skip blank ones."""
    if not path.is_file():
        raise ConfigError(f"--texts {path} does not exist", field="texts")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        try:
            return [str(json.loads(line)["text"]) for line in lines]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}: every line must be a JSON object with a 'text' field", field="texts"
            ) from exc
    return lines


def format_table(metrics: dict[str, object]) -> str:
    """Render the scalar metrics as a two-column text table."""
    rows = [(k, v) for k, v in metrics.items() if isinstance(v, int | float | str)]
    width = max(len(k) for k, _ in rows)
    out = []
    for key, value in rows:
        shown = f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else str(value)
        out.append(f"{key:<{width}}  {shown}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from sae_hub._io import write_json_atomic
    from sae_hub.eval import evaluate, plot_feature_density
    from sae_hub.models import load_model
    from sae_hub.sae import SAE

    texts = read_texts(args.texts)[: args.max_texts]
    model, tokenizer = load_model(args.model, device=args.device)
    sae = SAE.from_pretrained(args.sae, args.sae_id, revision=args.revision, device=args.device)
    result = evaluate(
        model, tokenizer, sae, texts, hook=args.hook, batch_size=args.batch_size, max_length=args.max_length
    )
    metrics = result.to_dict()
    print(format_table(metrics))
    write_json_atomic(args.output, metrics)
    print(f"\nwrote {args.output}")
    if args.plot is not None:
        plot_feature_density(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
