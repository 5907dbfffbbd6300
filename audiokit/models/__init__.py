"""Model weights trained by scripts/ and model recipes (`registry.py`) for the `embeddings`
extractor. Importing this package does not import torch."""

from audiokit.models.download import DownloadError, fetch, model_dir
from audiokit.models.registry import BUILTIN, ModelError, get_recipe, pull

__all__ = ["BUILTIN", "DownloadError", "ModelError", "fetch", "get_recipe", "model_dir", "pull"]
