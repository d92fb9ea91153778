"""Splicing benchmark: generation speed and per-forward overhead of one spliced SAE on SmolLM2-135M-Instruct.

Setup: the embedded SmolLM2-135M-Instruct (float32, CPU) and a 16384-latent ReLU SAE (576 -> 16384, seeded
random weights: speed does not depend on training) at `blocks.15.hook_resid_post`. Generation: greedy,
exactly `--new-tokens` new tokens with the KV cache, plain vs spliced with the error term (features cached
every pass) vs steered (one `add` edit). Forward: one batch of `--seq` tokens, plain vs error-term splice vs
replacement splice. All contenders run in interleaved rounds; medians are reported.

    python bench/bench_splice.py --write      # writes the "Splicing and generation" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys

import torch
from _common import machine, median_times, write_section

from sae_hub import SAE, Edit, SAEConfig, Steering, splice
from sae_hub.models import load_model

SECTION = "## Splicing and generation (issue: splice/steer)"
HOOK = "blocks.15.hook_resid_post"
D_SAE = 16384


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128, help="tokens in the forward-pass batch")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = load_model()
    sae = SAE(SAEConfig(d_in=model.config.hidden_size, d_sae=D_SAE).with_provenance(hook=HOOK))
    sae.reset_parameters(seed=0)
    prompt = tok("Once upon a time, in a small village by the sea,", return_tensors="pt")
    steer = Steering(sae, [Edit(123, "add", 8.0)])

    def generate() -> torch.Tensor:
        n = args.new_tokens
        return model.generate(**prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    def spliced_generate() -> torch.Tensor:
        with splice(model, sae, error_term=True, cache_features=True):
            return generate()

    def steered_generate() -> torch.Tensor:
        with steer.apply(model):
            return generate()

    with torch.no_grad():
        plain_out = generate()
        assert torch.equal(spliced_generate(), plain_out), "the error-term splice changed the generation"
        gen = median_times(
            {"plain": generate, "spliced": spliced_generate, "steered": steered_generate}, repeat=args.repeat
        )
        ids = torch.randint(
            0, model.config.vocab_size, (1, args.seq), generator=torch.Generator().manual_seed(0)
        )

        def forward() -> object:
            return model(ids)

        def forward_error_term() -> object:
            with splice(model, sae, error_term=True):
                return model(ids)

        def forward_replace() -> object:
            with splice(model, sae, error_term=False, cache_features=False):
                return model(ids)

        fwd = median_times(
            {"plain": forward, "error term": forward_error_term, "replace": forward_replace},
            repeat=args.repeat + 2,
        )

    tps = {k: args.new_tokens / v for k, v in gen.items()}
    rows = [
        "| generation | tokens/s | vs plain | target |",
        "|---|---|---|---|",
        f"| plain `model.generate` | {tps['plain']:.1f} | 1.00x | |",
        f"| spliced SAE, error term on, features cached | {tps['spliced']:.1f} | {tps['spliced'] / tps['plain']:.2f}x | >= 0.9x |",
        f"| steered (one `add` edit) | {tps['steered']:.1f} | {tps['steered'] / tps['plain']:.2f}x | |",
        "",
        f"| forward, 1 x {args.seq} tokens | ms | overhead per forward |",
        "|---|---|---|",
        f"| plain | {fwd['plain'] * 1e3:.1f} | |",
        f"| error-term splice (encode, cache features) | {fwd['error term'] * 1e3:.1f} | {(fwd['error term'] - fwd['plain']) * 1e3:+.1f} ms ({fwd['error term'] / fwd['plain'] - 1:+.1%}) |",
        f"| replacement splice (encode + decode) | {fwd['replace'] * 1e3:.1f} | {(fwd['replace'] - fwd['plain']) * 1e3:+.1f} ms ({fwd['replace'] / fwd['plain'] - 1:+.1%}) |",
    ]
    body = (
        f"SmolLM2-135M-Instruct (embedded, float32, CPU) with a {D_SAE}-latent ReLU SAE at `{HOOK}`. "
        f"Greedy generation of exactly {args.new_tokens} new tokens with the KV cache; the error-term splice "
        "produces the identical token sequence (checked). Medians of "
        f"{args.repeat} interleaved rounds (forward: {args.repeat + 2}). Machine: {machine()}. "
        f"Command: `python bench/bench_splice.py {' '.join(sys.argv[1:])}`.\n\n" + "\n".join(rows)
    )
    print(body)
    if args.write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
