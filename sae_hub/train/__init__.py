"""Train sparse autoencoders on transformers activations with accelerate: `train(TrainConfig(...))`."""

from __future__ import annotations

from sae_hub.train.config import TrainConfig
from sae_hub.train.trainer import train

__all__ = ["TrainConfig", "train"]
