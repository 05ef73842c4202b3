"""Output sets (:class:`robustlabels.output_set.OutputSet`): inject's and audit's files appear whole or not at all.

A set is *whole* when its seal (``manifest.json``, ``summary.json``) stands beside members that all belong to it;
the guarantee is that a seal never stands beside another set's members, and that a run killed after committing
leaves its complete set for the next run to publish. Checked here against faults at every file-system step (raised
and, in a forked child, SIGKILL), a second writer, leftovers, a full disk, Ctrl-C, and real ``kill -9`` of inject.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustlabels.errors import InputError
from robustlabels.io import sha256_of_array
from robustlabels.output_set import COMMITTED_PREFIX, LOCK_NAME, PARTIAL_PREFIX, OutputSet

MEMBERS = ("a.txt", "b.txt", "seal.json")
STEPS = ("replace", "rename", "unlink", "rmdir")  # the file-system steps a fault is injected at
REPO = Path(__file__).resolve().parents[1]
INJECT_NAMES = ("labels.npy", "labels.csv", "manifest.json")


class Abort(Exception):
    """Raised inside an output set to leave it without publishing."""


# ---- the mechanism on a three-file set ----------------------------------------------------------------------
def write_set(out: Path, tag: str, *, force: bool = False, **options: Any) -> None:
    """Write the set ``tag``: every member holds ``tag:name``."""
    with OutputSet(out, MEMBERS, seal="seal.json", force=force, **options) as files:
        for name in MEMBERS:
            files.path(name).write_text(f"{tag}:{name}", encoding="utf-8")


def set_state(out: Path) -> str:
    """``absent`` (no member), ``unsealed`` (members without the seal), ``mixed`` (a seal beside another set's
    members, or beside missing ones) or the tag of the whole set."""
    present = {name: (out / name).read_text(encoding="utf-8") for name in MEMBERS if (out / name).exists()}
    if "seal.json" not in present:
        return "unsealed" if present else "absent"
    tags = {text.split(":")[0] for text in present.values()}
    return tags.pop() if len(tags) == 1 and len(present) == len(MEMBERS) else "mixed"


def hidden_leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".robustlabels") or p.name.endswith(".tmp"))


def committed_leftover(out: Path) -> bool:
    return any(p.name.startswith(COMMITTED_PREFIX) for p in out.iterdir())


def next_run(out: Path) -> None:
    """What the next run does before writing (lock, finish or remove leftovers), then gives up."""
    with pytest.raises(Abort), OutputSet(out, MEMBERS, seal="seal.json", force=True):
        raise Abort


@contextmanager
def faults_at(step: int | None, action: Callable[[], None], *, persistent: bool = False) -> Iterator[list[int]]:
    """Count calls of os.replace/rename/unlink/rmdir; run ``action`` (raise, or kill) before call ``step`` (and every
    later one if ``persistent``). Yields ``[calls so far]``."""
    count = [0]
    originals = {name: getattr(os, name) for name in STEPS}

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def step_function(*args: Any, **kwargs: Any) -> Any:
            k = count[0]
            count[0] += 1
            if step is not None and (k == step or (persistent and k > step)):
                action()
            return real(*args, **kwargs)

        return step_function

    for name, real in originals.items():
        setattr(os, name, wrap(real))
    try:
        yield count
    finally:
        for name, real in originals.items():
            setattr(os, name, real)


def raise_eio() -> None:
    raise OSError(errno.EIO, "Input/output error (injected)")


def steps_of_a_publish(tmp_path: Path) -> int:
    """How many file-system steps replacing an old set with a new one takes."""
    out = tmp_path / "count"
    write_set(out, "old")
    with faults_at(None, raise_eio) as count:
        write_set(out, "new", force=True)
    return count[0]


def test_set_is_published_whole_and_other_files_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "folds").mkdir(parents=True)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "folds" / "fold0.ckpt").write_bytes(b"weights")
    write_set(out, "old")
    assert set_state(out) == "old"
    write_set(out, "new", force=True)
    assert set_state(out) == "new"
    assert sorted(p.name for p in out.iterdir()) == sorted([*MEMBERS, "folds", "notes.txt"])  # no lock, no staging
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "folds" / "fold0.ckpt").read_bytes() == b"weights"


def test_refusals_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_set(out, "old")
    with pytest.raises(InputError, match=r"already holds a\.txt, b\.txt, seal\.json; use --force"):
        write_set(out, "new")
    with pytest.raises(InputError, match=r"a\.txt' would overwrite an input file"):
        write_set(out, "new", force=True, inputs=[out / "a.txt"])
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="is a file"):
        write_set(tmp_path / "file", "new")
    assert set_state(out) == "old" and hidden_leftovers(out) == []


def test_a_write_error_names_the_output_and_a_read_error_stays_as_it_is(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_set(out, "old")
    with pytest.raises(OSError) as caught, OutputSet(out, MEMBERS, seal="seal.json", force=True) as files:
        raise OSError(errno.ENOSPC, "No space left on device", str(files.path("b.txt")))
    assert str(caught.value) == (f"cannot write '{out / 'b.txt'}': No space left on device; the outputs in '{out}' "
                                 "are unchanged") and caught.value.errno == errno.ENOSPC  # fmt: skip
    unreadable = OSError(errno.EACCES, "Permission denied", str(tmp_path / "labels.csv"))
    with pytest.raises(OSError) as caught, OutputSet(out, MEMBERS, seal="seal.json", force=True):
        raise unreadable
    assert caught.value is unreadable
    assert set_state(out) == "old" and hidden_leftovers(out) == []


def test_an_optional_member_not_written_goes_with_the_old_set_unless_it_is_an_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputSet(out, MEMBERS, seal="seal.json", optional=("probs.npy",)) as files:
        for name in (*MEMBERS, "probs.npy"):
            files.path(name).write_text(f"old:{name}", encoding="utf-8")
    write_set(out, "new", force=True, optional=("probs.npy",), inputs=[out / "probs.npy"])
    assert set_state(out) == "new" and (out / "probs.npy").read_text(encoding="utf-8") == "old:probs.npy"
    write_set(out, "newer", force=True, optional=("probs.npy",))
    assert set_state(out) == "newer" and not (out / "probs.npy").exists()


def test_an_exception_inside_leaves_the_old_set_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_set(out, "old")
    with pytest.raises(Abort), OutputSet(out, MEMBERS, seal="seal.json", force=True) as files:
        files.path("a.txt").write_text("new:a.txt", encoding="utf-8")
        raise Abort
    assert set_state(out) == "old" and hidden_leftovers(out) == []
    fresh = tmp_path / "x" / "y" / "z"
    with pytest.raises(Abort), OutputSet(fresh, MEMBERS, seal="seal.json") as files:
        files.path("a.txt").write_text("new:a.txt", encoding="utf-8")
        raise Abort
    assert not (tmp_path / "x").exists()  # the folders made for the run are removed again


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
def test_a_fault_at_any_step_leaves_a_whole_set(tmp_path: Path, persistent: bool) -> None:
    """os.replace/rename/unlink/rmdir fail at step k (only there, or from there on), for every k."""
    total = steps_of_a_publish(tmp_path)
    assert total >= 8  # the staged plan, the commit, the old seal out, three moves in, the clean-up
    outcomes = Counter()
    for k in range(total):
        out = tmp_path / f"fault{k}"
        write_set(out, "old")
        with faults_at(k, raise_eio, persistent=persistent):
            try:
                write_set(out, "new", force=True)
            except OSError as error:
                assert "injected" in str(error) and "\n" not in str(error)
        state, committed = set_state(out), committed_leftover(out)
        assert state in ("old", "new") or (state == "unsealed" and committed), (k, state)
        outcomes[state] += 1
        next_run(out)
        assert set_state(out) == ("new" if committed else state), k
        assert hidden_leftovers(out) == [], k
    assert outcomes["old"] and outcomes["new"]  # faults before the commit keep the old set, after it the new
    if persistent:
        assert outcomes["unsealed"]  # a publish that cannot finish leaves no seal; the next run finishes it


def test_a_kill_at_any_step_leaves_a_whole_set_or_one_the_next_run_finishes(tmp_path: Path) -> None:
    """A forked child replaces the old set and SIGKILLs itself before file-system step k, for every k."""
    total = steps_of_a_publish(tmp_path)
    outcomes = Counter()
    for k in range(total):
        out = tmp_path / f"kill{k}"
        write_set(out, "old")
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                with faults_at(k, lambda: os.kill(os.getpid(), signal.SIGKILL)):
                    write_set(out, "new", force=True)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, k
        state, committed = set_state(out), committed_leftover(out)
        assert state in ("old", "new") or (state == "unsealed" and committed), (k, state)
        outcomes["committed, unpublished" if committed else state] += 1
        next_run(out)
        assert set_state(out) == ("new" if committed else state), k
        assert hidden_leftovers(out) == [], k
    print(f"kill at each of {total} steps: {dict(outcomes)}")
    assert outcomes["old"] and outcomes["new"] and outcomes["committed, unpublished"]


def test_a_second_writer_is_refused_in_one_line_and_leaves_the_first_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputSet(out, MEMBERS, seal="seal.json") as first:
        for name in MEMBERS:
            first.path(name).write_text(f"first:{name}", encoding="utf-8")
        with pytest.raises(InputError, match=rf"^--out '.*out' is being written by another run \(pid {os.getpid()}\)$"):
            write_set(out, "second", force=True)
        assert first.staging.is_dir()  # the refused run did not take the live staging folder for a leftover
    assert set_state(out) == "first" and hidden_leftovers(out) == []
    write_set(out, "third", force=True)  # the lock is free again
    assert set_state(out) == "third"


def test_the_forked_workers_of_a_killed_run_do_not_keep_its_lock(tmp_path: Path) -> None:
    """A run forks a worker (a data loader's) and is killed; the worker lives on, and must not hold the lock."""
    out = tmp_path / "out"
    read_end, write_end = os.pipe()
    run = os.fork()
    if run == 0:
        try:
            with OutputSet(out, MEMBERS, seal="seal.json"):
                worker = os.fork()
                if worker == 0:
                    time.sleep(30)
                    os._exit(0)
                os.write(write_end, str(worker).encode())
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(run, 0)
    worker = int(os.read(read_end, 32))
    try:
        assert (out / LOCK_NAME).read_text(encoding="utf-8") == f"{run}\n"  # the killed run's lock file remains
        write_set(out, "next")
        assert set_state(out) == "next" and hidden_leftovers(out) == []
    finally:
        os.kill(worker, signal.SIGKILL)


def test_leftovers_of_a_killed_run_are_recognised_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_set(out, "old")
    partial = out / f"{PARTIAL_PREFIX}4194303-0123456789ab"
    partial.mkdir()
    (partial / "a.txt").write_text("dead:a.txt", encoding="utf-8")
    (out / f".a.txt.{'0' * 32}.tmp").write_text("half", encoding="utf-8")  # an atomic write's temporary
    (out / LOCK_NAME).write_text("4194303\n", encoding="utf-8")  # its owner is dead: the flock is free
    (out / ".a.txt.backup").write_text("mine", encoding="utf-8")  # not ours: a look-alike stays
    write_set(out, "new", force=True)
    assert set_state(out) == "new" and hidden_leftovers(out) == []
    assert (out / ".a.txt.backup").read_text(encoding="utf-8") == "mine"


# ---- inject ---------------------------------------------------------------------------------------------------
def save_source(path: Path, n: int, seed: int = 0) -> Path:
    np.save(path, np.random.default_rng(seed).integers(0, 10, n))
    return path


def inject_args(source: Path, out: Path, seed: int, *extra: str) -> list[str]:
    return ["--labels", str(source), "--noise", "symmetric", "--rate", "0.3", "--seed", str(seed), "--out", str(out),
            *extra]  # fmt: skip


def file_hashes(out: Path, names: tuple[str, ...] = INJECT_NAMES) -> dict[str, str]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in names if (out / name).exists()}


def inject_state(out: Path, *, read_csv: bool = True) -> str:
    """``absent``, ``unsealed``, or ``seed N`` of a whole inject set, checked: the manifest's hash matches the
    labels.npy beside it, and (``read_csv``) labels.csv holds the same labels."""
    if not (out / "manifest.json").exists():
        return "unsealed" if any((out / name).exists() for name in INJECT_NAMES) else "absent"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    labels = np.load(out / "labels.npy")
    assert manifest["labels_sha256"] == sha256_of_array(labels)
    if read_csv:
        csv_labels = np.loadtxt(out / "labels.csv", delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)[:, 1]
        assert np.array_equal(csv_labels, labels)
    return f"seed {manifest['seed']}"


class FullDisk:
    """A file whose writes fail with ENOSPC (what a full disk does), standing in for the real one."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def disk_full_from(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Files opened for writing from the ``nth`` on (1-based) get a full disk."""
    real_fdopen, opened = os.fdopen, [0]

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        opened[0] += 1
        handle = real_fdopen(fd, *args, **kwargs)
        return FullDisk(handle) if opened[0] >= nth else handle

    monkeypatch.setattr(os, "fdopen", fdopen)


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_inject_on_a_full_disk_is_one_line_and_keeps_the_old_set(tmp_path: Path, nth: int, capsys) -> None:
    from robustlabels.inject import main

    source, out = save_source(tmp_path / "clean.npy", 3000), tmp_path / "out"
    assert main(inject_args(source, out, 1)) == 0
    before = file_hashes(out)
    capsys.readouterr()
    disk_full_from(monkeypatch := pytest.MonkeyPatch(), nth)
    try:
        code = main(inject_args(source, out, 2, "--force"))
    finally:
        monkeypatch.undo()
    err = capsys.readouterr().err
    written = INJECT_NAMES[nth - 1]
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: cannot write '{out / written}': No space")
    assert f"the outputs in '{out}' are unchanged" in err
    assert file_hashes(out) == before and inject_state(out) == "seed 1" and hidden_leftovers(out) == []


def test_a_disk_without_any_space_is_one_line_naming_the_first_output_and_leaves_no_lock(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Not even the lock's pid can be written: the run goes on to its first output, which names the full disk."""
    from robustlabels.inject import main

    source, out = save_source(tmp_path / "clean.npy", 3000), tmp_path / "out"
    assert main(inject_args(source, out, 1)) == 0
    before = file_hashes(out)
    capsys.readouterr()
    disk_full_from(monkeypatch, 1)
    monkeypatch.setattr(os, "write", lambda fd, data: raise_enospc())
    assert main(inject_args(source, out, 2, "--force")) == 2
    assert capsys.readouterr().err == (f"error: cannot write '{out / 'labels.npy'}': No space left on device; the "
                                       f"outputs in '{out}' are unchanged\n")  # fmt: skip
    assert file_hashes(out) == before and hidden_leftovers(out) == []


def raise_enospc() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_inject_ctrl_c_is_one_line_exit_130_and_nothing_written(tmp_path: Path, capsys, monkeypatch) -> None:
    import robustlabels.inject as inject

    source, out = save_source(tmp_path / "clean.npy", 3000), tmp_path / "out"
    assert inject.main(inject_args(source, out, 1)) == 0
    before = file_hashes(out)
    capsys.readouterr()
    write_outputs = inject.write_outputs

    def interrupted_half_way(files: OutputSet, noisy: np.ndarray, manifest: dict[str, Any]) -> None:
        write_outputs(files, noisy, manifest)  # every file staged; Ctrl-C before the publish
        raise KeyboardInterrupt

    monkeypatch.setattr(inject, "write_outputs", interrupted_half_way)
    assert inject.main(inject_args(source, out, 2, "--force")) == 130
    assert capsys.readouterr().err == f"interrupted: nothing written to {out}\n"
    assert file_hashes(out) == before and hidden_leftovers(out) == []
    fresh = tmp_path / "fresh"
    assert inject.main(inject_args(source, fresh, 2)) == 130 and not fresh.exists()
    assert capsys.readouterr().err == f"interrupted: nothing written to {fresh}\n"


def test_a_real_ctrl_c_to_inject_leaves_a_whole_set_and_no_traceback(tmp_path: Path) -> None:
    source, out = save_source(tmp_path / "clean.npy", 1_000_000), tmp_path / "out"
    assert run_inject(source, out, 1).wait(60) == 0
    run = run_inject(source, out, 2, "--force")
    while not appeared(out, f"{PARTIAL_PREFIX}*") and run.poll() is None:  # into the work (a fixed sleep was
        time.sleep(0.001)  # not enough on a loaded CI machine: the signal came before Python's handler was set)
    run.send_signal(signal.SIGINT)
    code, err = run.wait(60), run.stderr.read() if run.stderr else ""
    assert (code, err) == (130, f"interrupted: nothing written to {out}\n") or (code == 0 and err == ""), err
    assert inject_state(out, read_csv=False) == ("seed 1" if code == 130 else "seed 2")
    assert hidden_leftovers(out) == []


def run_inject(source: Path, out: Path, seed: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "robustlabels.inject", *inject_args(source, out, seed, *extra)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_two_injects_on_one_out_give_one_whole_set_or_a_one_line_refusal(tmp_path: Path) -> None:
    source, out = save_source(tmp_path / "clean.npy", 300_000), tmp_path / "out"
    outcomes = Counter()
    for trial in range(3):
        runs = {seed: run_inject(source, out, seed, "--force") for seed in (10 + trial, 20 + trial)}
        finished = {seed: (run.wait(60), run.stderr.read() if run.stderr else "") for seed, run in runs.items()}
        for seed, (code, err) in finished.items():
            other = next(run.pid for other_seed, run in runs.items() if other_seed != seed)
            refusal = f"error: --out {str(out)!r} is being written by another run (pid {other})\n"
            assert (code, err) in ((0, ""), (2, refusal)), err
        winners = [f"seed {seed}" for seed, (code, _) in finished.items() if code == 0]
        assert inject_state(out) in winners and hidden_leftovers(out) == []
        outcomes["one refused" if len(winners) == 1 else "both ran, one after the other"] += 1
    print(f"two injects at once, 3 trials: {dict(outcomes)}")


def appeared(out: Path, pattern: str) -> bool:
    """Whether ``out`` holds a path matching ``pattern``, or a committed set (which comes after every staged file)."""
    return any(out.glob(pattern)) or any(out.glob(f"{COMMITTED_PREFIX}*"))


def kill_when(run: subprocess.Popen[str], out: Path, rng: random.Random, mode: str, seconds: float) -> str:
    """SIGKILL ``run``: ``at random`` (20-140 % of a full run's time), ``while writing`` (0-0.3 s after its first
    staged file appears) or ``at the commit`` (as soon as the committed folder appears); return when, as text."""
    start = time.perf_counter()
    if mode == "at random":
        time.sleep(rng.uniform(0.2, 1.4) * seconds)
    else:
        pattern = f"{PARTIAL_PREFIX}*/*" if mode == "while writing" else f"{COMMITTED_PREFIX}*"
        while not appeared(out, pattern) and run.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.3) if mode == "while writing" else 0.0)
    run.send_signal(signal.SIGKILL)
    return f"{mode} at {time.perf_counter() - start:.2f} s"


def test_kill_9_of_inject_over_an_existing_set_leaves_a_whole_set(tmp_path: Path) -> None:
    """SIGKILL ``inject --force`` on 1M labels at seeded random moments, while it writes, and as it commits; after
    each kill the folder holds the old set or the new one (byte for byte a reference run's), or a committed set without
    seal that the next run publishes; the source is unchanged."""
    source = save_source(tmp_path / "clean.npy", 1_000_000)
    source_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    references, seconds = {}, []
    for seed in (1, 2):
        start = time.perf_counter()
        assert run_inject(source, tmp_path / f"ref{seed}", seed).wait(60) == 0
        seconds.append(time.perf_counter() - start)
        assert inject_state(tmp_path / f"ref{seed}") == f"seed {seed}"  # whole, labels.csv included
        references[f"seed {seed}"] = file_hashes(tmp_path / f"ref{seed}")
    out = tmp_path / "out"
    shutil.copytree(tmp_path / "ref1", out)
    rng, outcomes = random.Random(16), []
    for trial in range(6):
        old = inject_state(out, read_csv=False)
        new = "seed 2" if old == "seed 1" else "seed 1"
        run = run_inject(source, out, int(new[-1]), "--force")
        when = kill_when(run, out, rng, ("at random", "while writing", "at the commit")[trial % 3], min(seconds))
        code = run.wait(60)
        state = inject_state(out, read_csv=False)  # and labels.csv: byte for byte the reference's, below
        committed = committed_leftover(out)
        assert state in (old, new) or (state == "unsealed" and committed), state
        if state != "unsealed":
            assert file_hashes(out) == references[state]
        outcome = "old set" if state == old else "new set" if state == new else "committed, unpublished"
        outcomes.append(f"{when}: {'finished' if code == 0 else 'killed'}, {outcome}")
        with pytest.raises(Abort), OutputSet(out, INJECT_NAMES, seal="manifest.json", force=True):
            raise Abort  # the next run's start: finishes or removes what the kill left
        after = inject_state(out, read_csv=False)
        assert after == (new if committed else state) and file_hashes(out) == references[after]
        assert hidden_leftovers(out) == []
    assert hashlib.sha256(source.read_bytes()).hexdigest() == source_hash
    print(f"kill -9 of inject (a full run takes {min(seconds):.1f} s):", *outcomes, sep="\n  ")
    assert any("killed" in outcome for outcome in outcomes)  # (a finished run is allowed, but not every time)


# ---- audit ----------------------------------------------------------------------------------------------------
@pytest.fixture
def audit_inputs(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 4)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 300))
    np.save(tmp_path / "p.npy", rng.dirichlet(np.ones(3), 300))
    return ["--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--pred-probs",
            str(tmp_path / "p.npy")]  # fmt: skip


AUDIT_NAMES = ("issues.csv", "summary.json", "report.html")


def test_audit_on_a_full_disk_is_one_line_and_keeps_the_old_set(tmp_path: Path, audit_inputs: list[str],
                                                                 capsys, monkeypatch) -> None:  # fmt: skip
    from robustlabels.audit.cli import main

    out = tmp_path / "out"
    assert main([*audit_inputs, "--out", str(out)]) == 0
    before = file_hashes(out, AUDIT_NAMES)
    capsys.readouterr()
    disk_full_from(monkeypatch, 2)  # issues.csv is written, summary.json hits the full disk
    assert main([*audit_inputs, "--out", str(out), "--force", "--seed", "3"]) == 2
    err = capsys.readouterr().err  # the audit's progress lines, then one error line
    assert err.splitlines()[-1].startswith(f"error: cannot write '{out / 'summary.json'}': No space"), err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert file_hashes(out, AUDIT_NAMES) == before and hidden_leftovers(out) == []


def test_audit_ctrl_c_is_one_line_exit_130_also_through_trainings_shutdown(tmp_path: Path, audit_inputs: list[str],
                                                                           capsys, monkeypatch) -> None:  # fmt: skip
    from robustlabels.audit import cli

    out = tmp_path / "out"
    assert cli.main([*audit_inputs, "--out", str(out)]) == 0
    before = file_hashes(out, AUDIT_NAMES)
    capsys.readouterr()

    def ctrl_c(self: Any, *args: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the interrupt arrives first

    def ctrl_c_during_training(self: Any, *args: Any) -> Any:  # Lightning: KeyboardInterrupt becomes SystemExit(1)
        try:
            ctrl_c(self)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            sys.exit(1)

    for interrupt in (ctrl_c, ctrl_c_during_training):
        monkeypatch.setattr(cli.Audit, "run", interrupt)
        assert cli.main([*audit_inputs, "--out", str(out), "--force"]) == 130
        assert capsys.readouterr().err == f"interrupted: nothing written to {out}\n"
        assert file_hashes(out, AUDIT_NAMES) == before and hidden_leftovers(out) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_audit_refuses_to_overwrite_its_own_input(tmp_path: Path, audit_inputs: list[str], capsys) -> None:
    from robustlabels.audit.cli import main

    out = tmp_path / "out"
    assert main([*audit_inputs, "--out", str(out)]) == 0
    before = file_hashes(out, AUDIT_NAMES)
    capsys.readouterr()
    assert main([*audit_inputs[:2], "--labels", str(out / "issues.csv"), "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "issues.csv' would overwrite an input file" in err
    assert file_hashes(out, AUDIT_NAMES) == before


def audit_set(out: Path, references: dict[str, dict[str, str]]) -> str:
    """``absent``, ``unsealed``, ``mixed`` or the labels file (``y``, ``y2``) of the whole audit set in ``out``: its
    summary.json names that file, and issues.csv and report.html are byte for byte that file's reference run's."""
    if not (out / "summary.json").exists():
        return "unsealed" if any((out / name).exists() for name in AUDIT_NAMES) else "absent"
    command = json.loads((out / "summary.json").read_text(encoding="utf-8"))["command"]
    for labels, reference in references.items():
        if f"/{labels}.npy" in command:
            same = file_hashes(out, ("issues.csv", "report.html")) == reference
            return labels if same else "mixed"
    return "mixed"


def test_a_kill_at_any_step_of_audit_leaves_a_whole_set_and_its_inputs(tmp_path: Path, audit_inputs: list[str],
                                                                       capsys) -> None:  # fmt: skip
    """``audit --force`` over an old set, in a forked child that SIGKILLs itself before file-system step k, for every
    k of the run (a set changes only at these steps, so this is every moment a kill can leave): the folder holds the
    old set or the new one, or the committed new set without its summary that the next run publishes; the inputs are
    byte-identical."""
    from robustlabels.audit.cli import main

    np.save(tmp_path / "y2.npy", (np.load(tmp_path / "y.npy") + 1) % 3)
    new_args = [tmp_path / "y2.npy" if arg.endswith("y.npy") else arg for arg in audit_inputs]
    inputs = {name: file_hashes(tmp_path, (name,))[name] for name in ("x.npy", "y.npy", "y2.npy", "p.npy")}
    references = {}
    for labels, args in (("y", audit_inputs), ("y2", [str(a) for a in new_args])):
        assert main([*args, "--out", str(tmp_path / f"ref-{labels}")]) == 0
        references[labels] = file_hashes(tmp_path / f"ref-{labels}", ("issues.csv", "report.html"))
    assert references["y"] != references["y2"]
    with faults_at(None, raise_eio) as count:
        assert main([*map(str, new_args), "--out", str(tmp_path / "ref-y2"), "--force"]) == 0
    capsys.readouterr()
    outcomes = Counter()
    for k in range(count[0]):
        out = tmp_path / f"kill{k}"
        shutil.copytree(tmp_path / "ref-y", out)
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                with faults_at(k, lambda: os.kill(os.getpid(), signal.SIGKILL)):
                    main([*map(str, new_args), "--out", str(out), "--force"])
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, k
        state, committed = audit_set(out, references), committed_leftover(out)
        assert state in ("y", "y2") or (state == "unsealed" and committed), (k, state)
        outcomes["committed, unpublished" if committed else {"y": "old", "y2": "new"}[state]] += 1
        with pytest.raises(Abort), OutputSet(out, AUDIT_NAMES, seal="summary.json", force=True):
            raise Abort  # the next run's start: finishes or removes what the kill left
        assert audit_set(out, references) == ("y2" if committed else state), k
        assert hidden_leftovers(out) == [], k
    assert {name: file_hashes(tmp_path, (name,))[name] for name in inputs} == inputs
    print(f"audit killed at each of {count[0]} steps: {dict(outcomes)}")
    assert outcomes["old"] and outcomes["new"] and outcomes["committed, unpublished"]
