"""The output dataset: Parquet parts committed by rename, the `files` table as the state."""

from audiokit.store.dataset import Dataset
from audiokit.store.schema import FILES_SCHEMA

__all__ = ["Dataset", "FILES_SCHEMA"]
