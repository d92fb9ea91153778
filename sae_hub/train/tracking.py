"""A JSON-lines metrics tracker for accelerate, so runs log without tensorboard or wandb installed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker


class JSONLTracker(GeneralTracker):
    """Append one JSON object per `log` call to `<logging_dir>/<run_name>/metrics.jsonl`."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(logging_dir) / run_name / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self) -> Path:
        return self.path

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        self._append({"config": values, "time": time.time()})

    def log(self, values: dict[str, Any], step: int | None = None, **_kwargs: Any) -> None:
        self._append({"step": step, "time": time.time(), **values})
