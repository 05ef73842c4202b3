"""How fast, and how close to the reference, does each text encoder variant embed texts? Side by side, one process.

    python benchmarks/text_encoder.py [--imdb 1000] [--agnews 1000] [--rounds 3] [--threads 2] [--f1] [--full-imdb]

Every variant embeds the same texts (the first ``--imdb`` IMDB test reviews, long, and the first ``--agnews``
NoisyAG-News texts, short, from ``../shared/data``) after a warm-up, in ``--rounds`` interleaved rounds (the order
reversed every other round). The table: texts/s (median over rounds), the ratio to the baseline (the median of
each round's ratio; the baseline is today's ``reference``: sentence-transformers ``encode``, batch 256), texts per
CPU-second (steadier than wall time on a shared machine), and the min / mean cosine of each text's embedding to
the baseline's.

``--f1`` also runs ``python -m robustlabels.audit --dataset noisy_agnews --method knn --text-views minilm --force``
with each selectable variant (``$ROBUSTLABELS_TEXT_ENCODER``, a fresh ``$ROBUSTLABELS_CACHE`` each) and reports
``final.flag_metrics.f1`` and the cosine over NoisyAG-News's 10,000 texts. The reference's embeddings are copied
from the user's cache when it holds them (they are the reference's by their key). ``--full-imdb`` times the
default variant on the 25,000 IMDB test reviews (``--imdb-every K``: every K-th, scaled up; wall and CPU seconds;
cosine to the cached reference if present).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from robustlabels.data.readers import read_noisy_agnews
from robustlabels.features import text, text_encoder

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMDB = SHARED / "imdb" / "imdb_test.jsonl.gz"
AGNEWS = SHARED / "noisy_agnews" / "noisyagnews_val10k_mid.csv.gz"
Embed = Callable[[list[str]], np.ndarray]


def read_imdb(n: int | None = None) -> list[str]:
    with gzip.open(IMDB, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    return texts[:n]


def read_agnews(n: int | None = None) -> list[str]:
    return list(read_noisy_agnews(AGNEWS)[0])[:n]


def sentence_transformers_embed(path: str, batch_size: int) -> Embed:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)

    return embed


def ours(path: str, run: text_encoder.BatchRunner, tokens_per_batch: int = text_encoder.TOKENS_PER_BATCH) -> Embed:
    tokenizer = text_encoder.load_tokenizer(path)
    return lambda texts: text_encoder.encode_in_length_order(texts, tokenizer, run, progress=False,
                                                             tokens_per_batch=tokens_per_batch)  # fmt: skip


def with_threads(threads: int, embed: Embed) -> Embed:
    def run(texts: list[str]) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return embed(texts)
        finally:
            torch.set_num_threads(previous)

    return run


def compiled(path: str) -> Embed:
    network = torch.compile(text_encoder.pooled_network(path), dynamic=True)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    return ours(path, run)


def variants(path: str, threads: int, args: argparse.Namespace) -> dict[str, Callable[[], Embed]]:
    """Label -> factory of the embedding function; the first is the baseline."""
    onnx_int8 = lambda: text_encoder.onnx_file(path, "onnx-int8")  # noqa: E731
    table: dict[str, Callable[[], Embed]] = {
        "reference: sentence-transformers, batch 256 (baseline)": lambda: sentence_transformers_embed(path, 256),
        "reference, batch 32": lambda: sentence_transformers_embed(path, 32),
        "torch fp32, token-sorted 8192-token batches (default)": lambda: ours(path, text_encoder.torch_runner(
            path, "torch")),
        "torch fp32, 2048-token batches": lambda: ours(path, text_encoder.torch_runner(path, "torch"), 2048),
        "torch fp32, 1 thread": lambda: with_threads(1, ours(path, text_encoder.torch_runner(path, "torch"))),
        "torch int8 (quantize_dynamic, Linear)": lambda: ours(path, text_encoder.torch_runner(path, "torch-int8")),
        "onnx fp32 (fused graph)": lambda: ours(path, text_encoder.onnx_runner(
            text_encoder.onnx_file(path, "onnx"), threads)),
        "onnx-int8 (int8 weights, feed-forward outputs fp32)": lambda: ours(path, text_encoder.onnx_runner(
            onnx_int8(), threads)),
    }
    if args.bf16:
        table["torch bf16 autocast"] = lambda: ours(path, text_encoder.torch_runner(path, "torch-bf16"))
    if args.compile:
        table["torch.compile (dynamic)"] = lambda: compiled(path)
    return table


def measure(embeds: dict[str, Embed], texts: list[str], rounds: int) -> dict[str, dict[str, object]]:
    """Interleaved rounds: per variant the wall and CPU rates of each round and its last output."""
    results: dict[str, dict[str, object]] = {name: {"wall": [], "cpu": []} for name in embeds}
    for round_ in range(rounds):
        names = list(embeds) if round_ % 2 == 0 else list(embeds)[::-1]
        for name in names:
            wall, cpu = time.perf_counter(), time.process_time()
            out = embeds[name](texts)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            results[name]["wall"].append(len(texts) / wall)  # type: ignore[attr-defined]
            results[name]["cpu"].append(len(texts) / cpu)  # type: ignore[attr-defined]
            results[name]["out"] = np.asarray(out, dtype=np.float32)
            print(f"  round {round_ + 1} {name}: {len(texts) / wall:.1f} texts/s", file=sys.stderr, flush=True)
    return results


def cosines(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Min and mean row-wise cosine of two ``(N, D)`` arrays of unit rows."""
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-12)
    return float(c.min()), float(c.mean())


def audit_f1(variant: str, work: Path, reference_cache: Path | None) -> tuple[float, float, np.ndarray]:
    """F1 of ``knn`` on NoisyAG-News with ``variant``, seconds, and the embeddings it cached."""
    cache = work / f"cache-{variant}"
    (cache / "embeddings").mkdir(parents=True, exist_ok=True)
    if variant == text.REFERENCE and reference_cache is not None:
        shutil.copy(reference_cache, cache / "embeddings" / reference_cache.name)
    env = {**os.environ, "ROBUSTLABELS_CACHE": str(cache), text.VARIANT_ENV: variant}
    out = work / f"audit-{variant}"
    cmd = [sys.executable, "-m", "robustlabels.audit", "--dataset", "noisy_agnews", "--method", "knn",
           "--text-views", "minilm", "--out", str(out), "--force"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    f1 = json.loads((out / "summary.json").read_text())["final"]["flag_metrics"]["f1"]
    (embedded,) = list((cache / "embeddings").glob("*.npy"))
    return float(f1), seconds, np.load(embedded)


def f1_rows(work: Path) -> list[str]:
    """One markdown row per selectable variant: F1, audit seconds, cosine to the reference over 10,000 texts."""
    agnews = read_agnews()
    cached = text.default_cache_dir() / f"{text.cache_key(agnews, variant=text.REFERENCE)}.npy"
    reference_cache = cached if cached.is_file() else None
    runs = {v: audit_f1(v, work, reference_cache) for v in (text.REFERENCE, "torch", "onnx-int8")}
    reference = runs[text.REFERENCE][2]
    rows = ["| variant | knn F1 | audit s | min cosine | mean cosine |", "|---|---|---|---|---|"]
    for variant, (f1, seconds, emb) in runs.items():
        low, mean = cosines(emb, reference)
        rows.append(f"| {variant} | {f1:.4f} | {seconds:.0f} | {low:.4f} | {mean:.5f} |")
    return rows


def full_imdb(work: Path, every: int) -> str:
    """Embed every ``every``-th IMDB test review with the default variant (progress bar on stderr): one line of
    figures, with the time for all 25,000 scaled from it when ``every`` > 1."""
    everything = read_imdb()
    texts = everything[::every]
    wall, cpu = time.perf_counter(), time.process_time()
    emb = text.encode_texts(texts, cache_dir=work / "imdb-cache")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    line = (f"IMDB test, {len(texts)} reviews, `{text.default_variant()}`: {wall:.0f} s wall, {cpu:.0f} CPU-s "
            f"({cpu / 2:.0f} s on 2 whole cores), {len(texts) / wall:.1f} texts/s")  # fmt: skip
    if every > 1:
        scale = len(everything) / len(texts)
        line += f"; all {len(everything)}: about {wall * scale:.0f} s wall, {cpu * scale / 2:.0f} s on 2 whole cores"
    cached = text.default_cache_dir() / f"{text.cache_key(everything, variant=text.REFERENCE)}.npy"
    if cached.is_file():
        low, mean = cosines(emb, np.load(cached)[::every])
        line += f"; cosine to the reference min {low:.4f}, mean {mean:.5f}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=int, default=1000)
    parser.add_argument("--agnews", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated substrings of the labels to run (and baseline)")
    parser.add_argument("--bf16", action="store_true", help="also bf16 autocast (emulated without AVX512_BF16)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation)")
    parser.add_argument("--f1", action="store_true", help="also the NoisyAG-News knn audit per variant")
    parser.add_argument("--full-imdb", action="store_true", help="also time the default on the 25,000 reviews")
    parser.add_argument("--imdb-every", type=int, default=1, help="--full-imdb on every k-th review only, scaled")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(args.threads)
    path = text._model_path(text.DEFAULT_MODEL)
    texts = read_imdb(args.imdb) + read_agnews(args.agnews)
    factories = variants(path, args.threads, args)
    keep = [s for s in args.only.split(",") if s]
    names = [n for i, n in enumerate(factories) if i == 0 or not keep or any(s in n for s in keep)]
    embeds = {}
    for name in names:
        start = time.perf_counter()
        embeds[name] = factories[name]()
        embeds[name](texts[:16])  # warm-up (and torch.compile's first compilation)
        print(f"built {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    results = measure(embeds, texts, args.rounds)
    base = names[0]
    base_rates = np.asarray(results[base]["wall"])
    print(f"\n{args.imdb} IMDB + {args.agnews} NoisyAG-News texts, {args.threads} threads, "
          f"{args.rounds} interleaved rounds, {time.strftime('%Y-%m-%d')}\n")  # fmt: skip
    print("| variant | texts/s | vs baseline | texts per CPU-s | min cosine | mean cosine |")
    print("|---|---|---|---|---|---|")
    for name in names:
        rates = np.asarray(results[name]["wall"])
        ratio = float(np.median(rates / base_rates))  # each round against the baseline of the same round
        wall, cpu = float(np.median(rates)), float(np.median(results[name]["cpu"]))  # type: ignore[arg-type]
        low, mean = cosines(results[name]["out"], results[base]["out"])  # type: ignore[arg-type]
        print(f"| {name} | {wall:.1f} | {ratio:.2f}× | {cpu:.1f} | {low:.4f} | {mean:.5f} |")
    if args.f1 or args.full_imdb:
        with tempfile.TemporaryDirectory(prefix="text-encoder-bench-") as tmp:
            if args.f1:
                print("\nNoisyAG-News (10,000 texts), `--method knn --text-views minilm`\n")
                print("\n".join(f1_rows(Path(tmp))))
            if args.full_imdb:
                print("\n" + full_imdb(Path(tmp), args.imdb_every))


if __name__ == "__main__":
    main()
