"""The fast path of the text encoder: all-MiniLM-L6-v2 with its own tokenising and token-sorted batching, in
PyTorch (the default, ``torch``) or ONNX Runtime.

sentence-transformers (the ``reference`` variant) sorts the texts by *character* count and pads each batch of
``batch_size`` texts to its longest. Here every text is tokenised once up front (Rust, the model's own
``tokenizer.json``, cut at :data:`MAX_TOKENS` word pieces), the texts are sorted by *token* count and cut into
batches of at most :data:`TOKENS_PER_BATCH` padded tokens, so short texts go many to a batch and long ones few,
and the network runs with mean pooling and normalisation inside it:

* ``torch``: PyTorch fp32 (SDPA attention): the reference's arithmetic, less padding, smaller batches;
* ``torch-int8``: ``quantize_dynamic`` int8 Linear layers; ``torch-bf16``: bf16 autocast (it pays only on a CPU
  with native bf16, AVX512_BF16 or AMX; on AVX2 it is emulated);
* ``onnx``: ONNX Runtime on the graph fused for BERT by ``onnxruntime.transformers`` (attention, LayerNorm, GELU);
* ``onnx-int8``: that graph with int8 weights (per output channel) and activations quantised per batch, the
  feed-forward outputs left fp32.

The int8 variants are faster but put some texts (very short ones, non-Latin scripts) below cosine 0.99 of the
reference; they are there to measure and for users who accept that. The ONNX variants need ``onnxruntime`` and
``onnx`` (not in the ``text`` extra); their files are exported from the bundled weights on first use into
``<cache root>/models`` (``$ROBUSTLABELS_CACHE/models`` or ``~/.cache/robustlabels/models``), named by a digest of
the weights and the recipe. Speed and agreement: ``benchmarks/text_encoder.py``, docs/benchmarks.md "Text encoder".
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustlabels.errors import InputError
from robustlabels.features.cache import cache_lock, default_cache_dir, using_all_cores

MAX_TOKENS = 256  # word pieces the model reads, [CLS] and [SEP] included (sentence-transformers' max_seq_length)
TOKENS_PER_BATCH = 8192  # padded tokens per forward pass (benchmarks/text_encoder.py)
MAX_TEXTS_PER_BATCH = 256
ONNX_OPSET = 17
EXPORT_RECIPE = "minilm-pooled-v1"  # bump when the exported graph changes: the file name changes with it
TORCH_VARIANTS = ("torch", "torch-int8", "torch-bf16")
ONNX_VARIANTS = ("onnx", "onnx-int8")

# (ids (B, T) int64, mask (B, T) int64) -> (B, D) float32 unit rows
BatchRunner = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------------ tokens and batches
def load_tokenizer(model_dir: str | Path) -> Any:
    """The model's fast (Rust) tokenizer, cutting at :data:`MAX_TOKENS` and never padding (the batches pad)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_padding()  # the shipped tokenizer.json pads and cuts at 128; sentence-transformers reads 256
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return tokenizer


def token_ids(tokenizer: Any, texts: Sequence[str]) -> list[np.ndarray]:
    """Each text's word-piece ids, ``[CLS] ... [SEP]``, at most :data:`MAX_TOKENS` long (``(T_i,)`` int64)."""
    return [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(list(texts))]


def length_sorted_batches(lengths: np.ndarray, tokens_per_batch: int = TOKENS_PER_BATCH,
                          max_texts: int = MAX_TEXTS_PER_BATCH) -> Iterator[np.ndarray]:
    """Indices of the texts, longest first, cut into batches whose padded size (texts × longest) stays within
    ``tokens_per_batch`` (a text longer than that is a batch of its own) and holds at most ``max_texts`` texts."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    start = 0
    while start < len(order):
        longest = max(1, int(lengths[order[start]]))
        size = max(1, min(max_texts, tokens_per_batch // longest))
        yield order[start : start + size]
        start += size


def padded(ids: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(B, T)`` int64 ids padded with 0 (``[PAD]``) and the ``(B, T)`` int64 attention mask."""
    width = max(len(row) for row in ids)
    batch = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        batch[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return batch, mask


def encode_in_length_order(texts: Sequence[str], tokenizer: Any, run: BatchRunner, *, progress: bool,
                           tokens_per_batch: int = TOKENS_PER_BATCH) -> np.ndarray:
    """Tokenise ``texts``, run them longest first in token-budget batches, and return ``(N, D)`` rows in the
    order of ``texts``. ``progress``: a tqdm bar on stderr counting texts (texts/s and an ETA)."""
    ids = token_ids(tokenizer, texts)
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    bar = _progress_bar(len(texts), lengths) if progress else None
    rows: np.ndarray | None = None
    try:
        for index in length_sorted_batches(lengths, tokens_per_batch):
            out = run(*padded([ids[i] for i in index]))
            if rows is None:
                rows = np.empty((len(texts), out.shape[1]), dtype=np.float32)
            rows[index] = out
            if bar is not None:
                bar.update(len(index))
    finally:
        if bar is not None:
            bar.close()
    assert rows is not None  # texts is not empty
    return rows


def _progress_bar(total: int, lengths: np.ndarray) -> Any:
    from tqdm.auto import tqdm

    # Longest texts come first, so the early rate (and ETA) is pessimistic; the bar says how many tokens remain.
    return tqdm(total=total, desc=f"embedding {total} texts ({int(lengths.sum())} tokens)", unit="text",
                file=sys.stderr, smoothing=0.1, dynamic_ncols=True)  # fmt: skip


# ------------------------------------------------------------------------------------------------ PyTorch
def pooled_network(model_dir: str | Path, attention: str = "sdpa") -> Any:
    """The bundled BERT with mean pooling and L2 normalisation on top: ``(ids, mask) -> (B, 384)``, eval mode.
    ``attention``: transformers' implementation (``eager`` exports to a graph ONNX Runtime fuses into its
    ``Attention`` op; ``sdpa`` does not fuse)."""
    import torch
    from transformers import AutoModel

    class MeanPooled(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state  # fmt: skip
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean.float(), dim=1)

    return MeanPooled(AutoModel.from_pretrained(str(model_dir), attn_implementation=attention)).eval()


def torch_runner(model_dir: str | Path, variant: str) -> BatchRunner:
    """A :data:`BatchRunner` on PyTorch: ``torch`` fp32, ``torch-int8`` (int8 Linear weights, dynamic activations)
    or ``torch-bf16`` (bf16 autocast)."""
    import contextlib

    import torch

    network = pooled_network(model_dir)
    if variant == "torch-int8":
        from torch.ao.quantization import quantize_dynamic

        network = quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if variant == "torch-bf16" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            return network(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()

    return run


# ------------------------------------------------------------------------------------------------ ONNX Runtime
def models_dir() -> Path:
    """Where exported encoder files live: beside the embeddings cache, in ``models``."""
    return default_cache_dir().parent / "models"


def weights_digest(model_dir: str | Path) -> str:
    """SHA-256 (hex, first 16) of the model's weight and config files: names the exported files."""
    digest = hashlib.sha256(EXPORT_RECIPE.encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = Path(model_dir) / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def export_onnx(model_dir: str | Path, path: Path) -> None:
    """Export :func:`pooled_network` to ``path`` (dynamic batch and length), fused for BERT by ONNX Runtime."""
    import torch
    from onnxruntime.transformers import optimizer

    raw = path.with_suffix(".raw.onnx")
    ids = torch.full((2, 16), 1000, dtype=torch.int64)
    dynamic = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
               "embedding": {0: "batch"}}  # fmt: skip
    with torch.inference_mode():
        torch.onnx.export(pooled_network(model_dir, "eager"), (ids, torch.ones_like(ids)), str(raw),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False)  # fmt: skip
    config = json.loads((Path(model_dir) / "config.json").read_text())
    fused = optimizer.optimize_model(str(raw), model_type="bert", num_heads=config["num_attention_heads"],
                                     hidden_size=config["hidden_size"])  # fmt: skip
    fused.save_model_to_file(str(path.with_suffix(".tmp.onnx")))
    os.replace(path.with_suffix(".tmp.onnx"), path)
    raw.unlink(missing_ok=True)


def feed_forward_outputs(graph_path: Path) -> list[str]:
    """Names of the MatMuls that read the GELU output of each layer (``layer.i/output/dense``, 1536 -> 384)."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name
            and "/attention/" not in n.name]  # fmt: skip


def quantise_int8(source: Path, path: Path) -> None:
    """``source`` with int8 weights (per output channel) in its attention and feed-forward input projections,
    activations quantised per batch at run time, to ``path``. The feed-forward outputs stay fp32: their inputs
    (after GELU) have outliers that one int8 scale per batch flattens, and quantised they cost 0.01 of cosine."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_suffix(".tmp.onnx")
    # DefaultTensorType 1 (FLOAT): shape inference gives the fused ops' outputs no type
    quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=feed_forward_outputs(source), extra_options={"DefaultTensorType": 1})  # fmt: skip
    os.replace(tmp, path)


def onnx_file(model_dir: str | Path, variant: str, folder: Path | None = None) -> Path:
    """The ONNX file of ``variant`` (``onnx`` or ``onnx-int8``), exported (and quantised) on first use."""
    folder = folder if folder is not None else models_dir()
    stem = f"minilm-{weights_digest(model_dir)}"
    fp32, int8 = folder / f"{stem}.onnx", folder / f"{stem}-int8.onnx"
    with cache_lock(folder):
        if not fp32.is_file():
            export_onnx(model_dir, fp32)
        if variant == "onnx-int8" and not int8.is_file():
            quantise_int8(fp32, int8)
    return int8 if variant == "onnx-int8" else fp32


def onnx_runner(path: Path, threads: int | None = None, *, spin: bool = True) -> BatchRunner:
    """A :data:`BatchRunner` on an ONNX Runtime CPU session of ``path`` (``threads``: default every core we may
    use; one inter-op thread, the graph is sequential; ``spin``: idle threads busy-wait for work)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {"input_ids": ids, "attention_mask": mask})[0], dtype=np.float32)

    return run


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def batch_runner(model_dir: str | Path, variant: str) -> BatchRunner:
    """The :data:`BatchRunner` of ``variant`` (one of :data:`ONNX_VARIANTS` or :data:`TORCH_VARIANTS`)."""
    if variant in ONNX_VARIANTS:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise InputError(f"the {variant!r} text encoder needs ONNX Runtime: pip install onnxruntime onnx") from None
        return onnx_runner(onnx_file(model_dir, variant))
    if variant in TORCH_VARIANTS:
        run = torch_runner(model_dir, variant)

        def on_all_cores(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with using_all_cores():
                return run(ids, mask)

        return on_all_cores
    raise ValueError(f"unknown text encoder variant {variant!r}")
