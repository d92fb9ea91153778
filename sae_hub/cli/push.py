"""`sae-hub push DIR REPO`: upload a saved SAE folder, or a training run's SAEs, with model cards, in one commit."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", help="an SAE folder, or a training run's output_dir (its saes/ sub-folders)"
    )
    parser.add_argument("repo_id", help="Hub repository, e.g. me/my-saes")
    parser.add_argument(
        "--path-in-repo", default=None, help="folder inside the repo (default: root or hook names)"
    )
    parser.add_argument("--message", default=None, help="commit message")
    parser.add_argument("--revision", default=None, help="branch to push to")
    parser.add_argument("--private", action="store_true", default=None, help="create the repo as private")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--license", default=None, help="license in the card metadata (default apache-2.0)")


def run(args: argparse.Namespace) -> int:
    from sae_hub.push import push_folder

    url = push_folder(args.folder, args.repo_id, path_in_repo=args.path_in_repo, commit_message=args.message,
                      revision=args.revision, private=args.private, create_pr=args.create_pr, license=args.license)  # fmt: skip
    print(url)
    return 0
