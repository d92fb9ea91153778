"""Hub I/O over huggingface_hub: resolve a release or repo, fetch only an SAE's files, convert once.

`load_remote` is what `SAE.from_pretrained` calls for anything that is not a local folder; `locate` and
`fetch` are its two steps, used on their own by `sae-hub download`; `inspect_remote` reads config files and the tensor
shapes of remote weight files with byte-range requests (for `sae-hub info`).
"""

from __future__ import annotations

from sae_hub.hub._fetch import Fetched
from sae_hub.hub._inspect import RemoteFileInfo, RemoteSAEInfo, inspect_remote
from sae_hub.hub._load import Located, fetch, load_remote, locate
from sae_hub.hub._remote import TensorInfo
from sae_hub.hub._target import Target, target_for

__all__ = [
    "Fetched",
    "Located",
    "RemoteFileInfo",
    "RemoteSAEInfo",
    "Target",
    "TensorInfo",
    "fetch",
    "inspect_remote",
    "load_remote",
    "locate",
    "target_for",
]
