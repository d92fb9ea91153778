"""Mirror an upstream SAE release into one native-format Hub repo, with a card per SAE and per release.

Only the public API is used: each SAE is loaded with `SAE.from_pretrained(RELEASE, SAE_ID)` (so every
format conversion is the library's own), written with `save_pretrained` into `<sae_id>/`, and the whole
folder goes up with `HfApi.upload_folder` as one commit. The mirror then loads by repo id:
`SAE.from_pretrained("ORG/NAME", SAE_ID)`.

    python converters/mirror_release.py gemma-scope-2b-pt-res --to-repo me/gemma-scope-2b-pt-res-native --limit 4
    python converters/mirror_release.py gpt2-small-res-jb --out mirror/   # write locally, push nothing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from sae_hub import registry
from sae_hub import SAE


def sae_card(sae: SAE) -> ModelCard:
    """A card for one mirrored SAE: where it reads, its shape, and where it came from."""
    cfg, prov = sae.cfg, sae.cfg.provenance
    data = ModelCardData(
        library_name="sae_hub",
        base_model=prov.model,
        tags=["sparse-autoencoder", "sae", "interpretability", cfg.architecture],
    )
    rows = [
        ("release", prov.release),
        ("SAE id", prov.sae_id),
        ("hook", prov.hook),
        ("HF module", prov.hf_hook),
        ("layer", prov.layer),
        ("d_in / d_sae", f"{cfg.d_in} / {cfg.d_sae}"),
        ("architecture", cfg.architecture + (f" (k={cfg.k})" if cfg.k else "")),
        ("source", f"{prov.repo_id or prov.extra.get('url')} @ {prov.revision} ({prov.source_format})"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows if v is not None)
    body = (
        f"---\n{data.to_yaml()}\n---\n\n# {prov.release} / {prov.sae_id}\n\n"
        "A sparse autoencoder mirrored in sae_hub's native format (`config.json` + `model.safetensors`).\n\n"
        f"| field | value |\n|---|---|\n{table}\n"
    )
    return ModelCard(body)


def release_card(release: str, repo_id: str, saes: list[SAE]) -> ModelCard:
    """The repo's card: what the release is and the list of mirrored SAEs with a loading snippet."""
    first = saes[0].cfg.provenance
    data = ModelCardData(
        library_name="sae_hub",
        base_model=first.model,
        tags=["sparse-autoencoder", "sae", "interpretability"],
    )
    lines = "\n".join(
        f"| `{s.cfg.provenance.sae_id}` | {s.cfg.provenance.hook} | {s.cfg.d_sae} | {s.cfg.architecture} |"
        for s in saes
    )
    body = (
        f"---\n{data.to_yaml()}\n---\n\n# {release} (sae_hub native mirror)\n\n"
        f"{len(saes)} SAE(s) of the `{release}` release, converted from `{first.repo_id or 'the upstream URLs'}` "
        f"at {first.revision or 'its published files'} ({first.source_format} format).\n\n"
        f"| SAE id | hook | width | architecture |\n|---|---|---|---|\n{lines}\n\n"
        "```python\nfrom sae_hub import SAE\n"
        f'sae = SAE.from_pretrained("{repo_id}", "{first.sae_id}")\n```\n'
    )
    return ModelCard(body)


def build_mirror(release: str, sae_ids: Sequence[str], folder: Path, repo_id: str) -> list[SAE]:
    """Load each SAE and write it natively with its card into `folder/<sae_id>/`; write the release card."""
    saes = []
    for sae_id in sae_ids:
        sae = SAE.from_pretrained(release, sae_id)
        target = folder / sae_id
        sae.save_pretrained(target)
        sae_card(sae).save(target / "README.md")
        saes.append(sae)
        print(f"converted {release} / {sae_id}")
    release_card(release, repo_id, saes).save(folder / "README.md")
    return saes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", help="registry release to mirror")
    parser.add_argument("--to-repo", help="Hub repo to push to (created if missing)")
    parser.add_argument("--out", type=Path, help="write the mirror here instead of a temporary folder")
    parser.add_argument("--limit", type=int, help="mirror only the first N SAE ids")
    parser.add_argument("--sae-id", action="append", help="mirror only these SAE ids (repeatable)")
    args = parser.parse_args(argv)
    if not args.to_repo and not args.out:
        parser.error("give --to-repo ORG/NAME, --out DIR, or both")
    ids = args.sae_id or registry.get_release(args.release).sae_ids
    ids = ids[: args.limit] if args.limit else ids
    repo_id = args.to_repo or f"<org>/{args.release}"
    with tempfile.TemporaryDirectory(prefix="sae_hub_mirror_") as tmp:
        folder = args.out or Path(tmp)
        saes = build_mirror(args.release, ids, folder, repo_id)
        if args.to_repo:
            api = HfApi()
            api.create_repo(args.to_repo, exist_ok=True)
            info = api.upload_folder(
                repo_id=args.to_repo,
                folder_path=folder,
                commit_message=f"Mirror {len(saes)} SAE(s) of {args.release} in sae_hub native format",
            )
            print(f"pushed {len(saes)} SAE(s) to {args.to_repo}: {info.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
