"""Core SAE math benchmark: sae_hub against SAELens on the same weights, CPU, float32, no_grad.

Four cases (every time is the median of `--repeats` interleaved rounds; ratios < 1 mean sae_hub is faster):

1. JumpReLU 16384 x 2304, batch 1024, threshold 0 (dense code, L0 ~ d_sae/2: nothing to exploit):
   `decode(encode(x))` in both libraries.
2. TopK k=32, 32768 x 768, batch 1024: sae_hub `encode_sparse` + `decode_sparse` against the dense path
   (`encode` then `f @ W_dec + b_dec`) and against SAELens's forward.
3. Load + first encode (batch 1024) of a 16384 x 2304 JumpReLU checkpoint in a fresh process: sae_hub
   `SAE.from_pretrained(native folder)` against SAELens `SAE.load_from_disk(its own format)` of the same
   weights; library imports are timed separately; peak RSS growth over the RSS before the load.
4. JumpReLU 16384 x 2304 with realistic sparsity (per-latent thresholds calibrated so L0 ~ 64,
   heavy-tailed firing rates), batch 1024: sae_hub forward and `decode(encode(x))` against SAELens.

    python bench/bench_core.py --repeats 5 --write     # writes the "Core SAE math" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RSS_HELPERS, machine, median_times, run_child, write_section

SECTION = "## Core SAE math (issue: core)"
BATCH = 1024


def jumprelu_weights(
    d_in: int, d_sae: int, *, target_l0: float | None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Unit-norm decoder, tied encoder, small biases; thresholds calibrated to `target_l0` (0 when None)."""
    gen = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=gen)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    W_enc = W_dec.T.contiguous()
    b_enc = torch.randn(d_sae, generator=gen) * 0.01
    b_dec = torch.randn(d_in, generator=gen) * 0.01
    threshold = torch.zeros(d_sae)
    if target_l0 is not None:
        # Heavy-tailed firing rates (log-uniform over 2.5 decades), scaled to the target mean L0.
        rate = torch.exp(torch.empty(d_sae).uniform_(math.log(1e-4), math.log(3e-2), generator=gen))
        rate *= target_l0 / rate.sum()
        calib = torch.randn(4096, d_in, generator=gen) @ W_enc + b_enc
        ranked = calib.sort(dim=0, descending=True).values
        row = (rate * calib.shape[0]).long().clamp(0, calib.shape[0] - 1)
        threshold = ranked.gather(0, row[None]).squeeze(0).clamp_min(0)
    return {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec, "threshold": threshold}


def _ours(arch: str, tensors: dict[str, torch.Tensor], **cfg_kw):
    from sae_hub import SAE, SAEConfig

    d_in, d_sae = tensors["W_enc"].shape
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, **cfg_kw)
    return SAE.from_tensors(cfg, tensors)


def _saelens(arch: str, tensors: dict[str, torch.Tensor], **cfg_kw):
    import sae_lens

    d_in, d_sae = tensors["W_enc"].shape
    cls, cfg_cls = {
        "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig),
        "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig),
    }[arch]
    sae = cls(
        cfg_cls(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", apply_b_dec_to_input=False, **cfg_kw)
    )
    sae.load_state_dict({n: t.clone() for n, t in tensors.items()})
    return sae.eval()


def _check(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    rel = float((a - b).norm() / b.norm())
    if rel > 1e-4:
        raise AssertionError(f"{what}: sae_hub and SAELens disagree (relative error {rel:.2e})")
    return rel


def case_jumprelu(repeats: int, *, target_l0: float | None) -> dict:
    tensors = jumprelu_weights(2304, 16384, target_l0=target_l0)
    ours, theirs = _ours("jumprelu", tensors), _saelens("jumprelu", tensors)
    x = torch.randn(BATCH, 2304, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        l0 = float((ours.encode(x) != 0).sum(-1).float().mean())
        rel = _check(ours(x), theirs.decode(theirs.encode(x)), "jumprelu forward")
        t = median_times(
            {
                "ours_forward": lambda: ours(x),
                "ours_enc_dec": lambda: ours.decode(ours.encode(x)),
                "saelens": lambda: theirs.decode(theirs.encode(x)),
            },
            repeat=repeats,
        )
    return {"l0": l0, "rel": rel, **t}


def case_topk(repeats: int) -> dict:
    d_in, d_sae, k = 768, 32768, 32
    gen = torch.Generator().manual_seed(2)
    W_dec = torch.randn(d_sae, d_in, generator=gen)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    tensors = {
        "W_enc": W_dec.T.contiguous(),
        "b_enc": torch.randn(d_sae, generator=gen) * 0.01,
        "W_dec": W_dec,
        "b_dec": torch.randn(d_in, generator=gen) * 0.01,
    }
    ours, theirs = _ours("topk", tensors, k=k), _saelens("topk", tensors, k=k)
    x = torch.randn(BATCH, d_in, generator=gen)

    def dense() -> torch.Tensor:
        return ours.encode(x) @ ours.W_dec + ours.b_dec

    def sparse() -> torch.Tensor:
        return ours.decode_sparse(*ours.encode_sparse(x))

    with torch.no_grad():
        rel = _check(sparse(), theirs(x), "topk forward")
        _check(dense(), theirs(x), "topk dense")
        t = median_times(
            {"sparse": sparse, "dense": dense, "ours_forward": lambda: ours(x), "saelens": lambda: theirs(x)},
            repeat=repeats,
        )
    return {"rel": rel, **t}


_LOAD_CHILD = RSS_HELPERS + textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import torch
    torch.set_num_threads(2)
    lib, path = sys.argv[1], sys.argv[2]
    if lib == "sae_hub":
        from sae_hub import SAE
        import sae_hub.loading, sae_hub.formats  # imported lazily by from_pretrained
        load = lambda: SAE.from_pretrained(path)
    else:
        from sae_lens import SAE
        load = lambda: SAE.load_from_disk(path, device="cpu")
    t_import = time.perf_counter() - t0
    x = torch.randn(1024, 2304, generator=torch.Generator().manual_seed(3))
    reset_peak()
    base = rss_bytes()
    t1 = time.perf_counter()
    sae = load()
    t_load = time.perf_counter() - t1
    peak_load = peak_bytes() - base
    with torch.no_grad():
        f = sae.encode(x)
    t_total = time.perf_counter() - t1
    print(json.dumps({"import": t_import, "load": t_load, "total": t_total, "peak_load": peak_load,
                      "peak_total": peak_bytes() - base, "checksum": float(f.double().sum())}))
    """
)


def case_load(repeats: int) -> dict:
    from statistics import median

    tensors = jumprelu_weights(2304, 16384, target_l0=64.0)
    weight_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    with tempfile.TemporaryDirectory() as tmp:
        ours_dir, theirs_dir = Path(tmp, "native"), Path(tmp, "saelens")
        _ours("jumprelu", tensors).save_pretrained(ours_dir)
        _saelens("jumprelu", tensors).save_model(str(theirs_dir))
        runs: dict[str, list[dict]] = {"sae_hub": [], "saelens": []}
        for _ in range(repeats):
            runs["sae_hub"].append(run_child(_LOAD_CHILD, "sae_hub", str(ours_dir)))
            runs["saelens"].append(run_child(_LOAD_CHILD, "saelens", str(theirs_dir)))
    ours_sum = {r["checksum"] for r in runs["sae_hub"]}
    theirs_sum = {r["checksum"] for r in runs["saelens"]}
    if not math.isclose(min(ours_sum), min(theirs_sum), rel_tol=1e-4):
        raise AssertionError(f"load case: encode checksums differ {ours_sum} vs {theirs_sum}")
    out: dict = {"weight_bytes": weight_bytes}
    for lib, rs in runs.items():
        for key in ("import", "load", "total", "peak_load", "peak_total"):
            out[f"{lib}_{key}"] = median(r[key] for r in rs)
    return out


def render(res: dict, repeats: int, cmd: str) -> str:
    j, t, ld, s = res["jumprelu_dense"], res["topk"], res["load"], res["jumprelu_l0"]
    wb = ld["weight_bytes"]
    ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
    return textwrap.dedent(
        f"""
        Machine: {machine()}. Command: `{cmd}`. Times are medians of {repeats} interleaved rounds (load case:
        {repeats} fresh processes per library), float32, `torch.no_grad()`, batch {BATCH}. Outputs are checked
        against SAELens's in each case (relative error <= 1e-4). Other jobs shared the 2 cores during the run,
        so single timings are noisy; the interleaved medians keep the ratios fair, not the absolute times.

        | case | sae_hub | SAELens / baseline | ratio | target |
        |---|---|---|---|---|
        | 1. JumpReLU 16384x2304, dense code (L0 {j["l0"]:.0f}), `decode(encode(x))` | {ms(j["ours_enc_dec"])} | {ms(j["saelens"])} | {j["saelens"] / j["ours_enc_dec"]:.2f}x throughput | >= 1.0x |
        | 1b. same, sae_hub `forward` | {ms(j["ours_forward"])} | {ms(j["saelens"])} | {j["saelens"] / j["ours_forward"]:.2f}x throughput | |
        | 2. TopK k=32 32768x768: `encode_sparse`+`decode_sparse` vs dense `encode` + `f @ W_dec` | {ms(t["sparse"])} | {ms(t["dense"])} (dense) | {t["dense"] / t["sparse"]:.2f}x faster | >= 3x |
        | 2b. same sparse path vs SAELens forward | {ms(t["sparse"])} | {ms(t["saelens"])} | {t["saelens"] / t["sparse"]:.2f}x faster | >= 1.0x |
        | 3. load + first encode, 16384x2304 JumpReLU, fresh process (imports excluded) | {ms(ld["sae_hub_total"])} | {ms(ld["saelens_total"])} | {ld["sae_hub_total"] / ld["saelens_total"]:.2f}x time | <= 1.0x |
        | 3b. load only | {ms(ld["sae_hub_load"])} | {ms(ld["saelens_load"])} | {ld["sae_hub_load"] / ld["saelens_load"]:.2f}x time | |
        | 3c. peak RSS growth during load, / weight bytes ({wb / 2**20:.0f} MiB) | {ld["sae_hub_peak_load"] / wb:.2f}x | {ld["saelens_peak_load"] / wb:.2f}x | | <= 1.25x |
        | 3d. peak RSS growth during load + encode (includes the 64 MiB `[1024, 16384]` code) | {ld["sae_hub_peak_total"] / wb:.2f}x | {ld["saelens_peak_total"] / wb:.2f}x | | |
        | 3e. library import in a fresh process | {ld["sae_hub_import"]:.1f} s | {ld["saelens_import"]:.1f} s | | |
        | 4. JumpReLU 16384x2304, realistic L0 {s["l0"]:.0f}: sae_hub `forward` vs SAELens `decode(encode(x))` | {ms(s["ours_forward"])} | {ms(s["saelens"])} | {s["ours_forward"] / s["saelens"]:.2f}x time | <= 0.65x |
        | 4b. same, sae_hub `decode(encode(x))` | {ms(s["ours_enc_dec"])} | {ms(s["saelens"])} | {s["ours_enc_dec"] / s["saelens"]:.2f}x time | |

        How to read it:

        - The encoder is one dense `[batch, d_in] @ [d_in, d_sae]` matmul in every library and every path;
          it is the floor. sae_hub's decoders gather only the active rows of `W_dec` (`embedding_bag`), so a
          sparse code costs one matmul instead of two: about 0.5x SAELens's time once L0 is small (case 4).
          A dense code (case 1, L0 = d_sae/2) switches to the matmul automatically (density > 5%), so
          both libraries run the same two matmuls there.
        - Case 2's 3x target cannot be met by any exact method: the dense baseline is encoder matmul + top-k +
          decoder matmul, and the decoder matmul has exactly the encoder's FLOPs, so removing it entirely
          caps the speed-up near 2x (measured: {t["dense"] / t["sparse"]:.2f}x). Getting past that would need an
          approximate encoder, which would change which latents fire.
        - Case 3: SAELens's `load_from_disk` memory-maps lazily and reads pages during the first encode;
          sae_hub's load reads every page once to reject NaN/Inf (a finite sum, no temporaries), which is
          why its load alone is slower while load + first encode is not. Its tensors stay views of a
          private memory map (no copy), so peak RSS growth during load is the weight bytes.
        """
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    res = {
        "jumprelu_dense": case_jumprelu(args.repeats, target_l0=None),
        "topk": case_topk(args.repeats),
        "jumprelu_l0": case_jumprelu(args.repeats, target_l0=64.0),
        "load": case_load(max(3, args.repeats // 2)),
    }
    cmd = "python bench/bench_core.py " + " ".join(sys.argv[1:])
    text = render(res, args.repeats, cmd.strip())
    print(text)
    print(res)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
