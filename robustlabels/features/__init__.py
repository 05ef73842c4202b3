"""Feature extractors that turn raw inputs (texts, images) into float vectors the data modules can serve."""

from robustlabels.features.image import encode_images
from robustlabels.features.text import DEFAULT_MODEL, EMBEDDING_DIM, cache_key, default_cache_dir, encode_texts

__all__ = ["DEFAULT_MODEL", "EMBEDDING_DIM", "cache_key", "default_cache_dir", "encode_images", "encode_texts"]
