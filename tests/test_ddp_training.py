"""Per-sample state under Lightning DDP: two gloo processes on CPU, launched as a launcher would (scale.md §3.4).

One launch serves the module (process start-up dominates): two processes get the environment a SLURM or torchrun
launcher sets for two nodes of one device (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``,
``NODE_RANK``, ``LOCAL_RANK``) and each runs every scenario of :data:`SCENARIOS` as
``Trainer(accelerator="cpu", num_nodes=2, devices=1, strategy="ddp")`` fits on N = 1,001 blobs with batch 16, so
the sampler pads (1,001 is odd). Each rank saves what it saw; the tests compare the ranks with each other and,
where the maths allows, with one process trained on the same global batches (:class:`UnionBlobs`).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from robustlabels.audit.training import ProbabilityPass, ProbabilityShards, read_probability_shards
from robustlabels.data.datamodule import DistributedEpochBatchSampler, EpochBatchSampler
from robustlabels.data.synthetic import BlobsDataModule
from robustlabels.errors import InputError
from robustlabels.module import RobustModule
from robustlabels.regularizers.elr import ELR
from robustlabels.regularizers.neighbor_consistency import NeighborConsistency
from robustlabels.strategies.adaptive_k import AdaptiveK, adaptive_threshold
from robustlabels.strategies.co_teaching import CoTeaching, forget_rate_schedule, num_remember
from robustlabels.strategies.crm import CollaborativeRewardFilter, curriculum_order
from robustlabels.strategies.elr_plus import ELRPlus
from robustlabels.strategies.storm import MetaLossRescaling

WORLD, N, BATCH, CLASSES, EPOCHS = 2, 1001, 16, 4, 2
STEPS = math.ceil(math.ceil(N / WORLD) / BATCH)  # 32 steps an epoch on each rank
BETA = 0.7  # ELR's momentum: a target's mass is 1 − β^visits, a counter of its updates
RESUME_STEP = 40  # a checkpoint in the middle of epoch 1


# ---- what the ranks and the reference run ------------------------------------------------------------------
def blobs(**kwargs: Any) -> BlobsDataModule:
    return BlobsDataModule(num_samples=N, test_samples=64, num_classes=CLASSES, dim=8, val_fraction=0.0,
                           batch_size=BATCH, **kwargs)  # fmt: skip


class UnionSampler(EpochBatchSampler):
    """One process's view of the DDP epoch: batch ``j`` is the ranks' ``j``-th batches, rank 0's first."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.started = self.epoch
        ranks = []
        for rank in range(WORLD):
            sampler = DistributedEpochBatchSampler(self.size, self.batch_size, shuffle=True, seed=self.seed,
                                                   drop_last=self.drop_last, rank=rank, world_size=WORLD)  # fmt: skip
            sampler.orders, sampler.epoch = self.orders, self.epoch
            ranks.append(list(sampler))
        for parts in zip(*ranks, strict=True):
            yield [p for part in parts for p in part]

    def __len__(self) -> int:
        return STEPS


class UnionBlobs(BlobsDataModule):
    def _train_sampler(self) -> EpochBatchSampler:
        return UnionSampler(len(self.datasets["train"]), BATCH, shuffle=True, seed=self.split_seed,
                            drop_last=self.drop_last)  # fmt: skip


class RecordingAdaptiveK(AdaptiveK):
    """Adaptive-k that keeps, per step, its local loss sum and count and the moments it reached."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps: list[tuple[float, int, float, float]] = []

    def compute_loss(self, batch, out):  # type: ignore[no-untyped-def]
        result = super().compute_loss(batch, out)
        losses = torch.nn.functional.cross_entropy(out.logits[0].float(), batch.targets, reduction="none")
        self.steps.append((float(losses.detach().double().sum()), len(losses), float(self.m), float(self.v)))
        return result


class Recorder(pl.Callback):
    """Per step: this rank's batch positions; per epoch: copies of the named state tensors of the module."""

    def __init__(self, state: dict[str, str]) -> None:
        self.state, self.batches, self.epochs = state, [], []  # type: ignore[var-annotated]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.batches.append((trainer.current_epoch, (batch["train"] if isinstance(batch, dict) else batch).index))

    def on_train_epoch_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
        values = {key: pl_module.get_buffer(name) if "." in name else getattr(pl_module, name)
                  for key, name in self.state.items()}  # fmt: skip
        values["params"] = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        self.epochs.append({k: v.detach().clone() for k, v in values.items()})


def fit(module: RobustModule, data: BlobsDataModule, state: dict[str, str], *, devices: int | None = None,
        epochs: int = EPOCHS, callbacks: tuple[pl.Callback, ...] = (), ckpt_path: str | None = None,
        **trainer: Any) -> dict[str, Any]:  # fmt: skip
    """Fit and return the recorder's records (``devices=None``: one device on each launched node)."""
    recorder = Recorder(state)
    ddp = devices is None
    pl.Trainer(accelerator="cpu", devices=1 if ddp else devices, num_nodes=WORLD if ddp else 1,
               strategy="ddp" if ddp else "auto", max_epochs=epochs, logger=False, callbacks=[recorder, *callbacks],
               enable_checkpointing=bool(callbacks), enable_progress_bar=False, enable_model_summary=False,
               limit_val_batches=0, num_sanity_val_steps=0, **trainer).fit(module, datamodule=data,
                                                                            ckpt_path=ckpt_path)  # fmt: skip
    return {"batches": recorder.batches, "epochs": recorder.epochs}


def model(strategy: Any = None, regularizers: tuple[Any, ...] = (), lr: float = 1e-2) -> RobustModule:
    pl.seed_everything(0, verbose=False)
    return RobustModule(strategy, backbone="mlp", backbone_kwargs={"hidden": 16}, regularizers=regularizers,
                        optimizer=lambda p: torch.optim.Adam(p, lr=lr), num_classes=CLASSES,
                        input_shape=(8,))  # fmt: skip


def elr_model() -> RobustModule:
    return model(regularizers=(ELR(momentum=BETA, weight=3.0),))


def elr_plus_model() -> RobustModule:
    return model(ELRPlus(momentum=BETA, seed=0, ema_rampup_steps=0, mixup_alpha=0.0))  # mixup pairs within a rank


def ncr_model() -> RobustModule:
    return model(regularizers=(NeighborConsistency(pool="dataset", k=5, start_epoch=1, index="Flat"),))


def crm_model() -> RobustModule:
    return model(CollaborativeRewardFilter(noise_rate=0.2, ramp_epochs=1, curriculum="sorted"))


ELR_STATE = {"targets": "regularizers.0.targets"}
CRM_STATE = {"margins": "strategy.margins", "seen": "strategy.seen", "kept": "strategy.kept"}
SCENARIOS: dict[str, Any] = {
    "elr": lambda: fit(elr_model(), blobs(), ELR_STATE),
    "elr_drop_last": lambda: fit(elr_model(), blobs(drop_last=True), ELR_STATE, epochs=1),
    "elr_plus": lambda: fit(elr_plus_model(), blobs(), {"targets": "strategy.targets"}),
    "ncr": lambda: fit(
        ncr_model(), blobs(), {"features": "regularizers.0.bank_features", "probs": "regularizers.0.bank_probs"}
    ),
    "crm": lambda: fit(crm_model(), blobs(), CRM_STATE),
    "co_teaching": lambda: fit(model(CoTeaching(forget_rate=0.3, num_gradual=2)), blobs(), {}),
    "elr_sharded": lambda: fit(
        model(regularizers=(ELR(momentum=BETA, shard_rows=True),), lr=0.0), blobs(rank_affine=True), ELR_STATE
    ),
}


def adaptive_k() -> dict[str, Any]:
    strategy = RecordingAdaptiveK(vanilla_epochs=0)
    records = fit(model(strategy), blobs(), {"m": "strategy.m", "v": "strategy.v"})
    return {**records, "steps": strategy.steps}


def resume(folder: Path) -> dict[str, Any]:
    """An uninterrupted ELR run that saves a checkpoint mid-epoch, and a run resumed from that checkpoint."""
    save = ModelCheckpoint(dirpath=folder, filename="{step}", every_n_train_steps=RESUME_STEP, save_top_k=-1)
    whole = fit(elr_model(), blobs(), ELR_STATE, callbacks=(save,))
    resumed = fit(elr_model(), blobs(), ELR_STATE, ckpt_path=str(folder / f"step={RESUME_STEP}.ckpt"))
    return {"whole": whole, "resumed": resumed}


def predict(folder: Path) -> dict[str, Any]:
    module, data = elr_model(), blobs(eval_batch_size=100)
    pl.Trainer(accelerator="cpu", devices=1, num_nodes=WORLD, strategy="ddp", logger=False, enable_progress_bar=False,
               callbacks=[ProbabilityShards(folder)]).predict(ProbabilityPass(module), datamodule=data,
                                                              return_predictions=False)  # fmt: skip
    return {}


def storm(mode: str) -> dict[str, Any]:
    strategy = MetaLossRescaling(mode=mode, meta_batch_size=8)  # type: ignore[arg-type]
    module = model(strategy)
    before = torch.cat([p.detach().flatten() for p in strategy.rescaler.parameters()])
    try:
        fit(module, blobs(), {}, epochs=1, max_steps=5)
    except InputError as error:
        return {"error": str(error)}
    params = torch.cat([p.detach().flatten() for p in strategy.rescaler.parameters()])
    return {"rescaler": params, "rescaler_before": before}


def run_rank(out: Path) -> None:
    """Every scenario in this process (one of the launched ranks); results in ``out/rank{r}.pt``."""
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    results = {name: scenario() for name, scenario in SCENARIOS.items()}
    results["adaptive_k"] = adaptive_k()
    results["resume"] = resume(out / "checkpoints")
    results["predict"] = predict(out / "predictions")
    results["storm_mwstyle"] = storm("storm_mwstyle")
    results["storm"] = storm("storm")  # last: it ends a fit with an error on both ranks
    torch.save(results, out / f"rank{rank}.pt")


# ---- the launch ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(command: list[str], *, cwd: Path, timeout: float = 240) -> list[subprocess.CompletedProcess[str]]:
    """Run ``command`` as two ranks on localhost, with the variables a two-node launcher sets."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(WORLD),
           "LOCAL_RANK": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}  # fmt: skip
    procs = [subprocess.Popen(command, cwd=cwd, env={**env, "RANK": str(r), "NODE_RANK": str(r)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(WORLD)]  # fmt: skip
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, output in zip(procs, outputs, strict=True):
        assert p.returncode == 0, output[-4000:]
    return [subprocess.CompletedProcess(command, p.returncode, o) for p, o in zip(procs, outputs, strict=True)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp")
    launch([sys.executable, "-m", "tests.test_ddp_training", str(out)], cwd=out)
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    results[0]["folder"] = out
    return results


def reference(build: Any, state: dict[str, str], **data: Any) -> dict[str, Any]:
    """One process on the same global batches."""
    torch.set_num_threads(1)
    return fit(build(), UnionBlobs(num_samples=N, test_samples=64, num_classes=CLASSES, dim=8, val_fraction=0.0,
                                   batch_size=BATCH, **data), state, devices=1)  # fmt: skip


def epoch_positions(result: dict[str, Any], epoch: int) -> list[Any]:
    return [index for e, index in result["batches"] if e == epoch]


# ---- the tests -----------------------------------------------------------------------------------------------
def test_global_batches_are_the_union_of_the_ranks_batches_and_cover_the_epoch(ranks: list[dict[str, Any]]) -> None:
    for epoch in range(EPOCHS):
        per_rank = [epoch_positions(r["elr"], epoch) for r in ranks]
        assert [len(b) for b in per_rank] == [STEPS] * WORLD
        union = torch.cat([torch.cat(steps) for steps in zip(*per_rank, strict=True)])
        assert len(union) == N + 1 and len(set(union.tolist())) == N  # padded by one repeat
        repeat = union[-1]  # the repeat lies in the last global batch, with its original
        assert int((union[-(len(union) % (BATCH * WORLD)) :] == repeat).sum()) == 2


@pytest.mark.parametrize("scenario, build, key", [("elr", elr_model, "targets"),
                                                  ("elr_plus", elr_plus_model, "targets")])  # fmt: skip
def test_replicated_targets_agree_on_ranks_and_with_one_process(ranks: list[dict[str, Any]], scenario: str,
                                                                build: Any, key: str) -> None:  # fmt: skip
    state = {"targets": "regularizers.0.targets" if scenario == "elr" else "strategy.targets"}
    one = reference(build, state)
    for epoch in range(EPOCHS):
        mine, theirs = (r[scenario]["epochs"][epoch] for r in ranks)
        assert torch.equal(mine[key], theirs[key]) and torch.equal(mine["params"], theirs["params"])
        torch.testing.assert_close(mine[key], one["epochs"][epoch][key], atol=2e-5, rtol=0)
        # every sample updated exactly once an epoch (the repeat de-duplicated): mass 1 − β^(epoch + 1)
        mass = mine[key].sum(-1)
        torch.testing.assert_close(mass, torch.full_like(mass, 1 - BETA ** (epoch + 1)), atol=1e-5, rtol=0)


def test_drop_last_updates_every_visited_sample_exactly_once(ranks: list[dict[str, Any]]) -> None:
    result = ranks[0]["elr_drop_last"]
    visited = torch.cat(epoch_positions(result, 0) + epoch_positions(ranks[1]["elr_drop_last"], 0))
    assert len(visited) == len(set(visited.tolist())) == N // (BATCH * WORLD) * BATCH * WORLD  # 992: 9 dropped
    mass = result["epochs"][0]["targets"].sum(1)
    expected = torch.zeros(N)
    expected[visited] = 1 - BETA
    torch.testing.assert_close(mass, expected, atol=1e-6, rtol=0)
    assert torch.equal(result["epochs"][0]["targets"], ranks[1]["elr_drop_last"]["epochs"][0]["targets"])


def test_ncr_dataset_bank_agrees_on_ranks_and_with_one_process(ranks: list[dict[str, Any]]) -> None:
    one = reference(ncr_model, {"features": "regularizers.0.bank_features", "probs": "regularizers.0.bank_probs"})
    for epoch in range(EPOCHS):
        mine, theirs = (r["ncr"]["epochs"][epoch] for r in ranks)
        for key in ("features", "probs", "params"):
            assert torch.equal(mine[key], theirs[key])
        for key in ("features", "probs"):
            torch.testing.assert_close(mine[key], one["epochs"][epoch][key], atol=5e-5, rtol=0)
        assert bool((mine["probs"].sum(1) > 0.99).all())  # every row written by one rank or the other


def test_adaptive_k_moments_follow_the_global_batch_mean(ranks: list[dict[str, Any]]) -> None:
    steps = [r["adaptive_k"]["steps"] for r in ranks]
    assert len(steps[0]) == len(steps[1]) == EPOCHS * STEPS
    m = v = torch.zeros((), dtype=torch.float64)
    for mine, theirs in zip(*steps, strict=True):
        mean = torch.tensor((mine[0] + theirs[0]) / (mine[1] + theirs[1]), dtype=torch.float64)
        m, v, _ = adaptive_threshold(m, v, mean, beta1=0.9, beta2=0.999, eps=1e-8)
        assert mine[2:] == theirs[2:]  # one threshold for both ranks
        assert math.isclose(mine[2], float(m), rel_tol=1e-9) and math.isclose(mine[3], float(v), rel_tol=1e-9)
    local = [s[0] / s[1] for s in steps[0]]
    assert any(abs(a - b) > 1e-3 for a, b in zip(local, [s[0] / s[1] for s in steps[1]], strict=True))  # teeth


def test_co_teaching_ranks_share_the_schedule_and_the_networks(ranks: list[dict[str, Any]]) -> None:
    for epoch in range(EPOCHS):
        assert torch.equal(*(r["co_teaching"]["epochs"][epoch]["params"] for r in ranks))
    rate = forget_rate_schedule(2, forget_rate=0.3, num_gradual=2)
    assert num_remember(BATCH, rate) == 11  # each rank keeps 11 of its 16: the per-rank rule of scale.md §3.2


def test_crm_margins_counts_and_curriculum_are_global(ranks: list[dict[str, Any]]) -> None:
    first, second = (r["crm"] for r in ranks)
    for epoch in range(EPOCHS):
        for key in ("margins", "seen", "kept", "params"):
            assert torch.equal(first["epochs"][epoch][key], second["epochs"][epoch][key])
        state = first["epochs"][epoch]
        assert torch.equal(state["seen"], torch.full((N,), float(epoch + 1)))  # each pair once an epoch
        assert not bool(state["margins"].isnan().any())  # every rank's records, not only its own
    # epoch 1 visits the pairs easy -> hard by epoch 0's margins, in global batches of B·W
    order = curriculum_order(first["epochs"][0]["margins"].mean(0), buckets=1, seed=1)
    union = torch.cat([torch.cat(s) for s in zip(epoch_positions(first, 1), epoch_positions(second, 1), strict=True)])
    for step in range(STEPS):
        got = union[step * BATCH * WORLD : (step + 1) * BATCH * WORLD]
        want = order[step * BATCH * WORLD : (step + 1) * BATCH * WORLD]
        assert set(got.tolist()) == set(want.tolist())


def test_resume_from_a_mid_epoch_checkpoint_equals_the_uninterrupted_run(ranks: list[dict[str, Any]]) -> None:
    whole, resumed = ranks[0]["resume"]["whole"], ranks[0]["resume"]["resumed"]
    assert torch.equal(
        torch.cat(epoch_positions(resumed, 1)), torch.cat(epoch_positions(whole, 1)[RESUME_STEP - STEPS :])
    )
    for key in ("targets", "params"):
        torch.testing.assert_close(resumed["epochs"][-1][key], whole["epochs"][-1][key], atol=1e-6, rtol=0)
        assert torch.equal(resumed["epochs"][-1][key], ranks[1]["resume"]["resumed"]["epochs"][-1][key])


def test_prediction_pass_writes_every_index_exactly_once(ranks: list[dict[str, Any]]) -> None:
    folder = ranks[0]["folder"] / "predictions"
    counts = [len(np.load(folder / f"index_rank{r}.npy")) for r in range(WORLD)]
    assert sum(counts) == N and min(counts) > 0  # both ranks predicted, nothing repeated
    probs = read_probability_shards(folder, N)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_storm_refuses_ddp_and_storm_mwstyle_keeps_the_rescaler_replicated(ranks: list[dict[str, Any]]) -> None:
    for result in ranks:
        assert "storm_mwstyle" in result["storm"]["error"]
    first, second = (r["storm_mwstyle"] for r in ranks)
    assert torch.equal(first["rescaler"], second["rescaler"])
    assert not torch.allclose(first["rescaler"], first["rescaler_before"])  # Ω did learn, from different batches


def test_rank_affine_elr_keeps_only_its_rows_and_matches_one_process(ranks: list[dict[str, Any]]) -> None:
    # lr 0: the predictions do not depend on the order, so the sets of updates must give the same targets
    one = fit(model(regularizers=(ELR(momentum=BETA, shard_rows=True),), lr=0.0), blobs(rank_affine=True),
              ELR_STATE, devices=1)  # fmt: skip
    full = one["epochs"][-1]["targets"]
    for rank, result in enumerate(ranks):
        shard = result["elr_sharded"]["epochs"][-1]["targets"]
        assert shard.shape == (math.ceil(N / WORLD), CLASSES)
        owned = torch.arange(rank, N, WORLD)
        torch.testing.assert_close(shard[: len(owned)], full[owned], atol=1e-6, rtol=0)
        visited = torch.cat(epoch_positions(result["elr_sharded"], 0))
        assert bool((visited % WORLD == rank).all())


def test_fit_command_line_runs_the_ddp_config_on_two_launched_nodes(tmp_path: Path) -> None:
    """configs/ddp/elr.yaml through ``python -m robustlabels.fit``, launched as two nodes of one CPU device."""
    command = [sys.executable, "-m", "robustlabels.fit", "--config", "ddp/elr", "--trainer.num_nodes=2",
               "--trainer.devices=1", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
               f"--trainer.default_root_dir={tmp_path / 'runs'}", "--data.init_args.drop_last=true"]  # fmt: skip
    outputs = [p.stdout for p in launch(command, cwd=tmp_path)]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    folder = tmp_path / "runs" / "elr" / "version_0"
    assert (folder / "checkpoints" / "last.ckpt").is_file() and not (tmp_path / "runs" / "elr" / "version_1").exists()
    history = json.loads((folder / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["train/acc"] > 0.3  # the ranks' training sums reduced: one epoch


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
