"""Nested dropout on the pre-logit features, as in Nested Co-teaching (Chen et al., 2021); docs/methods.md.

During training one ``k`` per mini-batch is drawn from ``p(k) ∝ exp(−(k/σ)²)``, ``k ∈ {1..D}`` (a discretised
half-Gaussian, no ½ in the exponent; **not** Rippel et al.'s geometric law), and feature channels
``k..D−1`` are zeroed without rescaling before a linear head **without bias** (a bias would leak class
information at small ``k``). At validation every prefix ``K = 1..D`` is scored and
``argmax_K (acc_K − penalty·K)`` is kept in the ``best_k`` buffer, saved with checkpoints and used whenever
the module is in eval mode. As in the official code, ``val/acc`` is then reported at the ``K`` chosen on the
validation split itself (slightly optimistic); ``test/acc`` at that ``K`` is not.

Scoring every prefix is cheap: with a bias-free head the prefix logits are a cumulative sum,
``z_K = Σ_{j<K} f_j W_{:,j}``, so all ``D`` prefixes cost ``B·D·C`` multiply-adds, as much as one ordinary
head pass (the official code runs the head ``D`` times, ``B·D²·C``). The ``(B, D, C)`` tensor is built in
row chunks of at most :data:`PREFIX_CHUNK_ELEMENTS` elements to bound memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from robustlabels.errors import InputError

PREFIX_CHUNK_ELEMENTS = 1 << 24  # 64 MiB of fp32 prefix logits at a time


def nested_k_probs(dim: int, sigma: float) -> Tensor:
    """``(D,)`` float64 probabilities ``p(k) ∝ exp(−(k/σ)²)`` of keeping ``k = 1..D`` channels."""
    k = torch.arange(1, dim + 1, dtype=torch.float64)
    p = torch.exp(-((k / sigma) ** 2))
    return p / p.sum()


def prefix_mask(features: Tensor, k: int | Tensor) -> Tensor:
    """Zero channels ``k..D−1`` of ``(B, D)`` features, without rescaling the kept ones.

    ``k`` is a host int (training: no device sync) or a 0-d tensor (eval: the ``best_k`` buffer).
    """
    if isinstance(k, int) and k >= features.shape[1]:
        return features
    keep = torch.arange(features.shape[1], device=features.device) < k
    return features * keep.to(features.dtype)


def prefix_logits(features: Tensor, weight: Tensor) -> Tensor:
    """``(B, D, C)`` fp32 logits of the bias-free head ``weight`` ``(C, D)`` on every prefix.

    Row ``[:, K − 1]`` equals ``prefix_mask(features, K) @ weight.T``.
    """
    return torch.cumsum(features.float().unsqueeze(2) * weight.float().t().unsqueeze(0), dim=1)


def prefix_correct_and_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per-prefix correct counts and summed cross-entropy, both ``(D,)``, of ``(B, D, C)`` prefix logits."""
    index = targets.view(-1, 1, 1).expand(-1, logits.shape[1], 1)
    loss = torch.logsumexp(logits, 2) - logits.gather(2, index).squeeze(2)
    return (logits.argmax(2) == targets.view(-1, 1)).sum(0).double(), loss.sum(0).double()


def select_k(correct: Tensor, total: float, *, penalty: float) -> int:
    """``argmax_K (correct_K / total − penalty·K)`` over ``K = 1..D`` (the first one on ties)."""
    k = torch.arange(1, len(correct) + 1, dtype=torch.float64, device=correct.device)
    return int(torch.argmax(correct.double() / max(total, 1.0) - penalty * k)) + 1


class NestedDropout(nn.Module):
    """Nested dropout between ``forward_features`` and a bias-free ``forward_head``.

    ``RobustModule(nested_dropout=NestedDropout(sigma=10))`` removes the head biases of its networks and
    applies this layer to each network's features (:class:`robustlabels.networks.Networks`); with two
    networks they share one ``k`` per mini-batch unless the strategy asks otherwise. ``Forward.features``
    stay unmasked. During ``fit``, validation scores every prefix with :class:`PrefixSelection`.

    Args:
        sigma: σ of ``p(k) ∝ exp(−(k/σ)²)`` (``--nested`` in the official scripts: 10 for CIFAR-10, 100 for
            CIFAR-100 and Clothing1M). σ=10 keeps 6 channels on average, σ=100 about 57.
        penalty: the ``penalty·K`` subtracted from the validation accuracy of prefix ``K`` (1e-5 there).

    Attributes:
        best_k: 0-d int64 buffer, the validation-optimal number of kept channels of the model (the mean of the
            networks' logits); 0 (all channels) until the first validation epoch of ``fit``. Re-selected every
            validation epoch, so it fits the current weights; the official code keeps the ``K`` of its
            best-validation checkpoint, which a ``ModelCheckpoint(monitor="val/acc")`` reproduces (the buffer
            is saved with the weights).
        network_k: ``(M,)`` int64 buffer, with ``M > 1`` networks: each network's own validation-optimal
            ``K`` (0 until selected); :meth:`network_limit`. The official Nested Co-teaching fine-tuning scores
            both networks at the model's ``best_k``; ``NestedCoTeaching(k_selection="per_network")`` uses these.

    Reference: Chen et al., "Boosting Co-teaching with Compression Regularization for Label Noise",
    CVPR Workshops (L2ID) 2021; Rippel et al., "Learning Ordered Representations with Nested Dropout", 2014.
    """

    best_k: Tensor
    network_k: Tensor

    def __init__(self, sigma: float = 10.0, *, penalty: float = 1e-5) -> None:
        super().__init__()
        if not sigma > 0:
            raise InputError(f"`sigma` must be > 0; got {sigma!r}")
        if not penalty >= 0:
            raise InputError(f"`penalty` must be >= 0; got {penalty!r}")
        self.sigma, self.penalty = float(sigma), float(penalty)
        self.register_buffer("best_k", torch.zeros((), dtype=torch.long))
        self.register_buffer("network_k", torch.zeros(0, dtype=torch.long))  # sized by Networks
        self._cdf: dict[int, list[float]] = {}  # per feature dim, on the host: sampling needs no device sync

    def draw_k(self, dim: int, *, generator: torch.Generator | None = None) -> int:
        """One ``k ∈ {1..dim}`` from ``p(k) ∝ exp(−(k/σ)²)`` by inverse CDF (torch's global CPU RNG unless
        ``generator``; 5 µs, against 25 µs for ``torch.multinomial``)."""
        if dim not in self._cdf:
            self._cdf[dim] = nested_k_probs(dim, self.sigma).cumsum(0).tolist()
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        return min(bisect.bisect_right(self._cdf[dim], u), dim - 1) + 1

    def forward(self, features: Tensor, k: int | Tensor | None = None) -> Tensor:
        """Mask ``(B, D)`` features: with ``k`` (drawn if None) in training, with ``best_k`` in eval mode."""
        if self.training:
            return prefix_mask(features, self.draw_k(features.shape[1]) if k is None else k)
        return prefix_mask(features, self.model_limit(features.shape[1]) if k is None else k)

    def model_limit(self, dim: int) -> Tensor:
        """0-d prefix length in eval mode: ``best_k``, or all ``dim`` channels before the first selection."""
        return torch.where(self.best_k > 0, self.best_k, dim)  # no host sync

    def network_limit(self, network: int, dim: int) -> Tensor:
        """0-d prefix length for network ``network`` in eval mode: its own ``K``, else :meth:`model_limit`."""
        if network >= len(self.network_k):
            return self.model_limit(dim)
        return torch.where(self.network_k[network] > 0, self.network_k[network], self.model_limit(dim))

    def apply_shared(self, features: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Mask every network's features; in training, with one ``k`` for the whole mini-batch."""
        k = self.draw_k(features[0].shape[1]) if self.training else None
        return tuple(self(f, k) for f in features)


class PrefixTally:
    """Validation sums of every prefix ``K``, for one split, over one epoch.

    Rows of :attr:`sums` ``(3 + M, D)``: ensemble (mean of the ``M`` networks' logits) correct against the
    given labels, ensemble summed cross-entropy, ensemble correct against the clean labels (where known), then
    each network's own correct count. :attr:`counts` is ``(samples, samples with known clean labels)``.
    """

    def __init__(self) -> None:
        self.sums: Tensor | None = None
        self.counts: Tensor | None = None

    def update(self, features: Sequence[Tensor], weights: Sequence[Tensor], targets: Tensor, clean: Tensor) -> None:
        """Add one batch: ``features`` ``(B, D)`` and head ``weights`` ``(C, D)``, one of each per network."""
        dim, classes = features[0].shape[1], weights[0].shape[0]
        step = max(1, PREFIX_CHUNK_ELEMENTS // (dim * classes))
        for start in range(0, len(targets), step):
            rows = slice(start, start + step)
            nets = [prefix_logits(f[rows], w) for f, w in zip(features, weights, strict=True)]
            mean = nets[0] if len(nets) == 1 else torch.stack(nets).mean(0)
            y, y_clean = targets[rows], clean[rows]
            correct, loss = prefix_correct_and_loss(mean, y)
            known = y_clean >= 0
            clean_correct = ((mean.argmax(2) == y_clean.view(-1, 1)) & known.view(-1, 1)).sum(0).double()
            own = [(z.argmax(2) == y.view(-1, 1)).sum(0).double() for z in nets]
            sums = torch.stack([correct, loss, clean_correct, *own])
            counts = torch.stack([torch.tensor(len(y), device=y.device), known.sum()]).double()
            self.sums = sums if self.sums is None else self.sums + sums
            self.counts = counts if self.counts is None else self.counts + counts

    def reduce(self, reduce_sum: Callable[[Tensor], Tensor]) -> None:
        """Sum over processes (``reduce_sum`` is e.g. the Lightning strategy's ``reduce``)."""
        if self.sums is not None and self.counts is not None:
            self.sums, self.counts = reduce_sum(self.sums), reduce_sum(self.counts)

    def metrics(self, k: int, *, split: str) -> dict[str, float]:
        """Accuracies (and, on ``val``, loss and clean accuracy) at prefix ``k``, as plain floats."""
        if self.sums is None or self.counts is None:
            return {}
        column = self.sums[:, k - 1].tolist()
        total, known = self.counts.tolist()
        values = {"acc": column[0] / max(total, 1.0)}
        if split == "val":
            values["loss"] = column[1] / max(total, 1.0)
            if known > 0:
                values["acc_clean"] = column[2] / known
        if len(column) > 4:  # two or more networks: each one's own accuracy as well
            values.update({f"acc_net{i}": c / max(total, 1.0) for i, c in enumerate(column[3:])})
        return values


class PrefixSelection:
    """One validation epoch of nested dropout during ``fit``: tally every prefix ``K`` per split, then select.

    The selected ``K`` maximises the penalised validation accuracy of the model (the mean of the networks'
    logits), as the official code selects it; with several networks, each network's own ``K`` is selected
    too (:attr:`NestedDropout.network_k`). Without a validation split the ``K`` in use is reported.
    """

    def __init__(self, nested: NestedDropout) -> None:
        self.nested = nested
        self.tallies: dict[str, PrefixTally] = {}

    def update(self, split: str, features: Sequence[Tensor], weights: Sequence[Tensor], targets: Tensor,
               clean: Tensor) -> None:  # fmt: skip
        """Add one batch of ``split``: each network's ``(B, D)`` features and ``(C, D)`` head weight."""
        self.tallies.setdefault(split, PrefixTally()).update(features, weights, targets, clean)

    def finish(self, reduce_sum: Callable[[Tensor], Tensor], *, keep: bool) -> dict[str, float]:
        """Sum over processes, select ``K`` (stored in the buffers only if ``keep``: not in Lightning's sanity
        check) and return the metrics to log: ``val/nested_k``, ``val/nested_k_net{i}``, ``{split}/acc`` ..."""
        for tally in self.tallies.values():
            tally.reduce(reduce_sum)
        val, logs = self.tallies.get("val"), {}
        if val is not None and val.sums is not None and val.counts is not None:
            penalty, total = self.nested.penalty, float(val.counts[0])
            k = select_k(val.sums[0], total, penalty=penalty)
            own_k = [select_k(own, total, penalty=penalty) for own in val.sums[3:]] if len(val.sums) > 4 else []
            if keep:
                self.nested.best_k.fill_(k)
                self.nested.network_k.copy_(torch.tensor(own_k, dtype=torch.long))
            logs.update({f"val/nested_k_net{i}": float(k_i) for i, k_i in enumerate(own_k)})
        else:  # no validation split: report the other splits at the K in use
            sums = next((t.sums for t in self.tallies.values() if t.sums is not None), None)
            if sums is None:
                return {}
            k = int(self.nested.best_k) or sums.shape[1]
        logs["val/nested_k"] = float(k)
        for split, tally in self.tallies.items():
            logs.update({f"{split}/{name}": value for name, value in tally.metrics(k, split=split).items()})
        return logs


__all__ = [
    "NestedDropout",
    "PrefixSelection",
    "PrefixTally",
    "nested_k_probs",
    "prefix_logits",
    "prefix_mask",
    "select_k",
]
