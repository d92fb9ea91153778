"""Mirror an upstream SAE release into one native-format Hub repo, with a card per SAE and per release.

Only the public API is used: each SAE is loaded with `SAE.from_pretrained(RELEASE, SAE_ID)` (so every
format conversion is the library's own), written with `save_pretrained` into `<sae_id>/` with its card
(`sae_hub.cards`, plus a Source section), and the whole folder goes up with `HfApi.upload_folder` as one
commit. The mirror then loads by repo id:
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

from huggingface_hub import HfApi, ModelCard

from sae_hub import SAE, cards, registry


def source_note(sae: SAE) -> str:
    """The mirror's provenance, appended to each card: upstream release, repo or URL, commit, format."""
    prov = sae.cfg.provenance
    where = f"`{prov.repo_id}` at commit `{prov.revision}`" if prov.repo_id else f"<{prov.extra.get('url')}>"
    return (
        "\n## Source\n\n"
        f"Mirrored from the `{prov.release}` release (SAE `{prov.sae_id}`): {where}, "
        f"`{prov.source_format}` format, converted with `converters/mirror_release.py`.\n"
    )


def build_mirror(release: str, sae_ids: Sequence[str], folder: Path, repo_id: str) -> dict[str, SAE]:
    """Load each SAE and write it natively with its card into `folder/<sae_id>/`; write the release card."""
    saes: dict[str, SAE] = {}
    for sae_id in sae_ids:
        sae = SAE.from_pretrained(release, sae_id)
        target = folder / sae_id
        sae.save_pretrained(target)
        card = cards.sae_card(sae, repo_id, sae_id=sae_id)
        ModelCard(str(card) + source_note(sae)).save(target / "README.md")
        saes[sae_id] = sae
        print(f"converted {release} / {sae_id}")
    first = next(iter(saes.values()))
    card = cards.release_card(saes, repo_id)
    ModelCard(str(card) + source_note(first).replace(f" (SAE `{first.cfg.provenance.sae_id}`)", "")).save(
        folder / "README.md"
    )
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
