"""Push SAEs to the Hub: weights, `config.json` and a model card in one commit.

Everything is staged in a temporary folder and uploaded with one `upload_folder` call whose
`parent_commit` is the branch head read just before, so a concurrent push to the same repo fails
(HTTP 412) instead of being silently overwritten. A repo with SAEs in sub-folders also gets a
top-level `config.json` (a manifest of its SAEs, which is also the file the Hub counts downloads by)
and a release card listing every SAE, including ones pushed earlier.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sae_hub import cards
from sae_hub.errors import HubTimeoutError, PushConflictError, UnknownFormatError
from sae_hub.sae import SAE

logger = logging.getLogger(__name__)

MANIFEST_KIND = "sae_hub.release"


def _write_sae(sae: SAE, folder: Path, repo_id: str, sae_id: str | None, metrics: Mapping[str, Any] | None,
               training_config: Mapping[str, Any] | None, license: str | None) -> None:  # fmt: skip
    sae.save_pretrained(folder)
    m = metrics if metrics is not None else sae.cfg.provenance.extra.get("metrics")
    if m:
        (folder / "metrics.json").write_text(json.dumps(dict(m), indent=2, sort_keys=True) + "\n")
    t = training_config if training_config is not None else sae.cfg.provenance.extra.get("training_config")
    if t:
        (folder / "training_config.json").write_text(json.dumps(dict(t), indent=2, sort_keys=True) + "\n")
    card = cards.sae_card(sae, repo_id, sae_id=sae_id, metrics=metrics, training_config=training_config,
                          license=license)  # fmt: skip
    card.save(folder / "README.md")


def _existing_manifest(api: Any, repo_id: str, parent: str | None) -> dict[str, Any]:
    """SAEs listed in the repo's current top-level config.json (none when it has no manifest)."""
    from huggingface_hub.errors import EntryNotFoundError

    if parent is None:
        return {}
    try:
        path = api.hf_hub_download(repo_id, "config.json", revision=parent)
    except EntryNotFoundError:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return dict(data.get("saes", {})) if data.get("kind") == MANIFEST_KIND else {}


def _commit(repo_id: str, stage: Any, *, commit_message: str, token: str | bool | None, private: bool | None,
            revision: str | None, create_pr: bool) -> str:  # fmt: skip
    """Create the repo if needed, stage files with `stage(folder, api, parent)`, upload them as one commit."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)  # takes no timeout (see RELIABILITY.md)
    parent = _head(api, repo_id, revision, after="nothing was pushed; push again")
    with tempfile.TemporaryDirectory(prefix="sae_hub_push_") as tmp:
        stage(Path(tmp), api, parent)
        try:
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
                parent_commit=None if create_pr else parent,
            )
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code != 412:
                raise
            landed = _landed(api, repo_id, revision, Path(tmp))
            if landed is not None:  # our commit went through, its answer was lost, the client's retry got 412
                logger.info("pushed to %s: %s (the commit's response was lost; found it on the branch)",
                            repo_id, landed)  # fmt: skip
                return f"{api.endpoint}/{repo_id}/commit/{landed}"
            raise PushConflictError(
                f"{repo_id}@{revision or 'main'} moved past {parent} while pushing (someone else committed); "
                "nothing was pushed and their files are untouched. Push again to add yours on top.",
                response=exc.response,
            ) from exc
    logger.info("pushed to %s: %s", repo_id, info.commit_url)
    return str(info.pr_url or info.commit_url)


def _head(api: Any, repo_id: str, revision: str | None, *, after: str) -> str | None:
    """The branch head's commit, read with the metadata timeout that `repo_info` does not set by itself.

    A read that times out is a `HubTimeoutError` naming the branch, ending with `after` (what that
    means for the push).
    """
    import httpx2
    from huggingface_hub import constants as hf_constants

    timeout = hf_constants.HF_HUB_ETAG_TIMEOUT  # read at call time, like hf_hub_download's metadata request
    try:
        return api.repo_info(repo_id, revision=revision, timeout=timeout).sha
    except httpx2.TimeoutException as exc:
        raise HubTimeoutError(
            f"Timed out after {timeout} s reading the head of {repo_id}@{revision or 'main'} from the Hub "
            f"({type(exc).__name__}): {after}."
        ) from exc


def _landed(api: Any, repo_id: str, revision: str | None, staged: Path) -> str | None:
    """The branch head if it already holds every staged file byte for byte, else None."""
    unknown = "the commit's answer was lost and whether it landed is unknown; check before pushing again"
    head = _head(api, repo_id, revision, after=unknown)
    paths = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    remote = {f.path: f for f in api.get_paths_info(repo_id, paths, revision=head)}
    for path in paths:
        data, entry = (staged / path).read_bytes(), remote.get(path)
        if entry is None:
            return None
        if entry.lfs is not None:
            same = entry.lfs.sha256 == hashlib.sha256(data).hexdigest()
        else:
            same = entry.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        if not same:
            return None
    return head


def push_run(saes: Mapping[str, SAE], repo_id: str, *, commit_message: str | None = None,
             token: str | bool | None = None, private: bool | None = None, revision: str | None = None,
             create_pr: bool = False, license: str | None = None) -> str:  # fmt: skip
    """Push several SAEs into sub-folders (`{sae_id: SAE}`) of one repo, with a release card; one commit.

    Returns the commit (or pull request) URL.
    """
    if not saes:
        raise ValueError("push_run needs at least one SAE")

    def stage(root: Path, api: Any, parent: str | None) -> None:
        previous = _existing_manifest(api, repo_id, parent)
        for sae_id, sae in saes.items():
            _write_sae(sae, root / sae_id, repo_id, sae_id, None, None, license)
        manifest = {"kind": MANIFEST_KIND, "library_name": cards.LIBRARY_NAME,
                    "saes": previous | {sid: cards.summary(s) for sid, s in saes.items()}}  # fmt: skip
        (root / "config.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        cards.release_card(saes, repo_id, license=license, summaries=previous).save(root / "README.md")

    message = commit_message or f"Upload {len(saes)} SAE(s) with sae_hub"
    return _commit(repo_id, stage, commit_message=message, token=token, private=private, revision=revision,
                   create_pr=create_pr)  # fmt: skip


def push_sae(sae: SAE, repo_id: str, *, path_in_repo: str | None = None, commit_message: str | None = None,
             token: str | bool | None = None, private: bool | None = None, revision: str | None = None,
             metrics: Mapping[str, Any] | None = None, training_config: Mapping[str, Any] | None = None,
             create_pr: bool = False, license: str | None = None) -> str:  # fmt: skip
    """Push one SAE (weights, config.json, model card) to `repo_id` in one commit; return the commit URL.

    With `path_in_repo` the SAE goes into that folder and the repo's top-level manifest and release card
    are updated to list it next to the SAEs already there. Example: `push_sae(sae, "me/my-saes")`.
    """
    if path_in_repo:
        sae_id = path_in_repo.strip("/")
        if metrics is not None or training_config is not None:
            extra = dict(sae.cfg.provenance.extra)
            extra.update({k: dict(v) for k, v in (("metrics", metrics), ("training_config", training_config))
                          if v is not None})  # fmt: skip
            sae = SAE.from_tensors(sae.cfg.with_provenance(extra=extra), sae.state_tensors())
        return push_run({sae_id: sae}, repo_id, commit_message=commit_message or f"Upload SAE {sae_id}",
                        token=token, private=private, revision=revision, create_pr=create_pr, license=license)  # fmt: skip

    def stage(root: Path, _api: Any, _parent: str | None) -> None:
        _write_sae(sae, root, repo_id, None, metrics, training_config, license)

    return _commit(repo_id, stage, commit_message=commit_message or "Upload SAE with sae_hub", token=token,
                   private=private, revision=revision, create_pr=create_pr)  # fmt: skip


def _load_folder(folder: Path) -> SAE:
    sae = SAE.from_pretrained(folder)
    extra = dict(sae.cfg.provenance.extra)
    for name, key in (("metrics.json", "metrics"), ("training_config.json", "training_config")):
        if (folder / name).is_file():
            extra[key] = json.loads((folder / name).read_text(encoding="utf-8"))
    return SAE.from_tensors(sae.cfg.with_provenance(extra=extra), sae.state_tensors())


def push_folder(folder: str | os.PathLike[str], repo_id: str, *, path_in_repo: str | None = None,
                **kwargs: Any) -> str:  # fmt: skip
    """Push a saved SAE folder, or a training run (`<run>/saes/<hook>/` or a folder of SAE folders).

    A single SAE goes to the repo root (or `path_in_repo`); a run's SAEs go to sub-folders named after
    their hooks, with a release card. Returns the commit URL.
    """
    from sae_hub import formats

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    names = [p.name for p in root.iterdir()]
    try:
        formats.detect(names, path=str(root))
        single = True
    except UnknownFormatError:
        single = False
    if single:
        return push_sae(_load_folder(root), repo_id, path_in_repo=path_in_repo, **kwargs)
    base = root / "saes" if (root / "saes").is_dir() else root
    subs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = {p.name: p for p in subs if _is_sae(p)}
    if not found:
        raise UnknownFormatError(names, path=str(root))
    prefix = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
    return push_run({prefix + name: _load_folder(p) for name, p in found.items()}, repo_id, **kwargs)


def _is_sae(folder: Path) -> bool:
    from sae_hub import formats

    try:
        formats.detect([p.name for p in folder.iterdir()], path=str(folder))
    except UnknownFormatError:
        return False
    return True
