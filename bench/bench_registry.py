"""Registry benchmark: reading every release (cold, in a fresh process) in sae_hub and in SAELens.

sae_hub: `registry.load_registry()` (all data files, validated; SAE entries expand lazily), then
expanding every SAE and one `resolve`. SAELens: `get_pretrained_saes_directory()` on its
`pretrained_saes.yaml`. Library imports are not timed. Wall and CPU seconds are medians over
`--repeats` fresh processes, run alternately.

    python bench/bench_registry.py --repeats 5 --write   # writes the "Registry" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, run_child, write_section

SECTION = "## Registry (issue: registry and loading)"

OURS = textwrap.dedent(
    """
    import json, time
    from sae_hub import registry
    from sae_hub.registry.loader import load_registry
    w, c = time.perf_counter(), time.process_time()
    releases = load_registry()
    load = (time.perf_counter() - w, time.process_time() - c)
    w, c = time.perf_counter(), time.process_time()
    n = sum(len(r.saes) for r in releases.values())
    expand = (time.perf_counter() - w, time.process_time() - c)
    w = time.perf_counter()
    registry.resolve("gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71")
    resolve = time.perf_counter() - w
    print(json.dumps({"load": load, "expand": expand, "resolve": resolve, "releases": len(releases), "saes": n}))
    """
)
SAELENS = textwrap.dedent(
    """
    import json, time
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
    w, c = time.perf_counter(), time.process_time()
    d = get_pretrained_saes_directory()
    load = (time.perf_counter() - w, time.process_time() - c)
    print(json.dumps({"load": load, "releases": len(d), "saes": sum(len(v.saes_map) for v in d.values())}))
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(run_child(OURS))
        theirs.append(run_child(SAELENS))

    def med(runs: list[dict], key: str, i: int | None = None) -> float:
        return statistics.median(r[key] if i is None else r[key][i] for r in runs)

    body = f"""
Machine: {machine()}. Command: `python bench/bench_registry.py --repeats {args.repeats} --write`.
Medians over {args.repeats} fresh processes; imports not timed.

| | releases | SAE ids | wall s | CPU s |
|---|---|---|---|---|
| sae_hub `load_registry()` (all files, validated) | {ours[0]["releases"]} | {ours[0]["saes"]} | {med(ours, "load", 0):.3f} | {med(ours, "load", 1):.3f} |
| sae_hub: expand every SAE entry (lazy, on first use) | | | {med(ours, "expand", 0):.3f} | {med(ours, "expand", 1):.3f} |
| sae_hub `resolve()` after loading | | | {med(ours, "resolve"):.5f} | |
| SAELens `get_pretrained_saes_directory()` | {theirs[0]["releases"]} | {theirs[0]["saes"]} | {med(theirs, "load", 0):.3f} | {med(theirs, "load", 1):.3f} |
"""
    print(body)
    if args.write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
