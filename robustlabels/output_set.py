"""Several files written into one folder as a set that appears whole or not at all, also when the run is killed.

``inject`` (labels, their csv and manifest) and ``audit`` (issues, summary, report) write through
:class:`OutputSet`; the single-file atomic writes it stages with live in :mod:`robustlabels.io`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from robustlabels.errors import InputError
from robustlabels.io import atomic_write_text, check_output_folder, missing_folders, remove_empty_folders

LOCK_NAME = ".robustlabels.lock"
PARTIAL_PREFIX = ".robustlabels-partial-"
COMMITTED_PREFIX = ".robustlabels-commit-"
PLAN_NAME = ".plan.json"
_BUSY_ERRNOS = (errno.EAGAIN, errno.EACCES)


class PublishError(OSError):
    """A committed output set could not be moved into place; the next run on its folder moves it."""


class OutputSet:
    """Files written into ``out`` as one set: the set appears whole or not at all, also when the run is killed.

    Usage::

        with OutputSet(out, ("labels.npy", "manifest.json"), seal="manifest.json", force=force) as files:
            atomic_save_npy(files.path("labels.npy"), labels)
            atomic_write_text(files.path("manifest.json"), manifest)

    Entering locks ``out`` (a second run is refused in one line naming the first's pid), finishes or removes
    what killed runs left there (:func:`finish_leftovers`), refuses an existing set without ``force`` and an
    output that is one of ``inputs``, and opens a hidden staging folder ``out/.robustlabels-partial-<pid>-<id>``
    that :meth:`path` points into. Leaving without an exception commits the set in one atomic step (the staging
    folder is renamed ``.robustlabels-commit-<pid>-<id>``) and then publishes it (:func:`publish_committed`): the
    old ``seal`` is removed first and the new one moved in last, so a seal only ever stands beside the members of
    its own set. A kill before the commit leaves the old set; a kill after it leaves no seal and the committed
    folder, which the next run on ``out`` publishes. An exception discards the staging folder, so ``out`` keeps
    its old set (folders made for this run are removed again). Files in ``out`` that are not members (a user's
    notes, training folders) are never touched. Ctrl-C is held back while the set is published; if the set is
    published, the interrupt is dropped (the run has finished).

    Args:
        out: the output folder, created if missing.
        names: the files this run writes, ``seal`` among them.
        seal: the member removed first and published last (the manifest or summary): a folder that has it holds
            a whole set.
        force: replace an existing set; without it any existing member is refused.
        inputs: files this run reads. Writing over one is refused; an optional member that is an input is neither
            counted as existing nor removed.
        optional: members this run may or may not write (``pred_probs.npy``); one it does not write is removed
            on publishing, as part of the old set.
    """

    def __init__(self, out: str | Path, names: Sequence[str], *, seal: str, force: bool = False,
                 inputs: Iterable[str | Path] = (), optional: Sequence[str] = ()) -> None:  # fmt: skip
        if seal not in names:
            raise ValueError(f"the seal {seal!r} must be one of {', '.join(names)}")
        self.out = Path(out)
        self.names, self.optional, self.seal, self.force = tuple(names), tuple(optional), seal, force
        self.inputs = frozenset(Path(p).resolve() for p in inputs)
        self.staging = self.out / f"{PARTIAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.published = False
        self._open = False
        self._lock = _FolderLock(self.out)
        self._made: list[Path] = []

    @property
    def members(self) -> tuple[str, ...]:
        """Every file name of the set: ``names`` and ``optional``."""
        return self.names + self.optional

    def path(self, name: str) -> Path:
        """Where to write the member ``name`` while the set is open (inside the staging folder)."""
        if name not in self.members:
            raise KeyError(f"{name!r} is not a member of this output set ({', '.join(self.members)})")
        if not self._open:
            raise RuntimeError("the output set is not open: use it in a `with` block")
        return self.staging / name

    def __enter__(self) -> OutputSet:
        self._check_target()
        try:
            self._made = missing_folders(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
            finish_leftovers(self.out, self.members)
            self._check_existing()
            self.staging.mkdir()
            self._open = True
        except BaseException as error:
            self._close()
            if isinstance(error, OSError):
                raise self._named(error) from error
            raise
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        failure = error
        try:
            if error is None:
                with _interrupts_held():
                    self._commit_and_publish()
        except BaseException as publishing_error:
            failure = publishing_error
            if not isinstance(failure, OSError):
                raise
        finally:
            self._close()
        if isinstance(failure, OSError):
            named = self._named(failure)
            if named is failure:
                raise failure
            raise named from failure

    def _check_target(self) -> None:
        check_output_folder(self.out)
        for name in self.names:
            if self._is_input(name):
                raise InputError(f"output {str(self.out / name)!r} would overwrite an input file; choose another --out")

    def _check_existing(self) -> None:
        present = [name for name in self.members if os.path.lexists(self.out / name)]
        folders = [name for name in present if (self.out / name).is_dir()]
        if folders:
            raise InputError(f"output {str(self.out / folders[0])!r} is a folder; move it or choose another --out")
        existing = [name for name in present if not self._is_input(name)]
        if existing and not self.force:
            raise InputError(f"output folder {str(self.out)!r} already holds {', '.join(existing)}; use --force to "
                             "replace")  # fmt: skip

    def _is_input(self, name: str) -> bool:
        return (self.out / name).resolve() in self.inputs

    def _commit_and_publish(self) -> None:
        atomic_write_text(self.staging / PLAN_NAME, json.dumps(self._plan()))
        _fsync_folder(self.staging)
        committed = self.out / (COMMITTED_PREFIX + self.staging.name.removeprefix(PARTIAL_PREFIX))
        os.rename(self.staging, committed)  # the commit: from here on, the new set is what `out` will hold
        self._open = False
        try:
            publish_committed(committed)
        except OSError:
            self._publish_again(committed)
        self.published = True

    def _plan(self) -> dict[str, Any]:
        """What publishing does: move ``publish`` into place (``seal`` last), remove the old set's ``remove``."""
        written = [name for name in self.members if (self.staging / name).is_file()]
        missing = [name for name in self.names if name not in written]
        if missing:
            raise RuntimeError(f"output set for {str(self.out)!r} is incomplete: {', '.join(missing)} not written")
        overwriting = [name for name in written if self._is_input(name)]
        if overwriting:
            raise InputError(f"output {str(self.out / overwriting[0])!r} would overwrite an input file; choose "
                             "another --out")  # fmt: skip
        stale = [name for name in self.optional if name not in written and not self._is_input(name)]
        return {"seal": self.seal, "publish": written, "remove": stale}

    def _publish_again(self, committed: Path) -> None:
        """Second try after a failed step (every step can be repeated); then give up, leaving it to the next run."""
        try:
            publish_committed(committed)
        except OSError as error:
            raise PublishError(f"could not move the finished outputs into {str(self.out)!r} ({error}); they are "
                               f"complete in {str(committed)!r}, and the next run on this folder moves them") from error

    def _named(self, error: OSError) -> OSError:
        """A write error in ``out`` as one line naming the output (not its staging path) and saying that ``out`` is
        unchanged; other errors (reading an input) as they are."""
        if isinstance(error, PublishError) or error.filename is None:
            return error
        path, staging = Path(os.path.abspath(error.filename)), Path(os.path.abspath(self.staging))
        if path.is_relative_to(staging):
            path = self.out / path.relative_to(staging)
        elif path.name == LOCK_NAME or path == Path(os.path.abspath(self.out)):
            path = self.out
        elif not path.is_relative_to(os.path.abspath(self.out)):
            return error
        reason = error.strerror or str(error)
        named = OSError(f"cannot write {str(path)!r}: {reason}; the outputs in {str(self.out)!r} are unchanged")
        named.errno = error.errno  # (no strerror or filename: they would reformat the message)
        return named

    def _close(self) -> None:
        """Discard the staging folder (gone once committed), unlock, and remove the folders made for nothing."""
        self._open = False
        shutil.rmtree(self.staging, ignore_errors=True)
        self._lock.release()
        remove_empty_folders(self._made)


def publish_committed(committed: Path) -> None:
    """Move a committed output set into its folder, then remove the committed folder.

    The order: the old seal is removed, the members are moved in, the old set's members that the new set lacks
    are removed, the new seal is moved in. Every step can be repeated, so a run killed half-way is finished by
    calling this again (:func:`finish_leftovers` does).
    """
    out = committed.parent
    plan = _read_plan(committed)
    if plan is not None and (committed / plan["seal"]).exists():
        seal = plan["seal"]
        (out / seal).unlink(missing_ok=True)
        _fsync_folder(out)
        for name in plan["publish"]:
            if name != seal and (committed / name).exists():
                os.replace(committed / name, out / name)
        for name in plan["remove"]:
            (out / name).unlink(missing_ok=True)
        _fsync_folder(out)
        os.replace(committed / seal, out / seal)
        _fsync_folder(out)
    shutil.rmtree(committed)


def finish_leftovers(out: Path, members: Sequence[str] = ()) -> None:
    """Finish or remove what killed runs left in ``out``; only while holding its lock (:class:`OutputSet` does).

    A committed set (``.robustlabels-commit-*``) is published; a staging folder (``.robustlabels-partial-*``) and
    an atomic write's temporary of one of ``members`` (``.labels.npy.<32 hex digits>.tmp``) are removed. Holding
    the lock proves that the run that made them is gone.
    """
    for entry in list(out.iterdir()):  # at most one committed set: each run finishes the last before committing
        if entry.name.startswith(COMMITTED_PREFIX) and entry.is_dir():
            publish_committed(entry)
        elif entry.name.startswith(PARTIAL_PREFIX) and entry.is_dir():
            shutil.rmtree(entry)
        elif any(_is_temporary_of(entry.name, name) for name in members):
            entry.unlink(missing_ok=True)


def _is_temporary_of(filename: str, name: str) -> bool:
    """Whether ``filename`` is the name :func:`atomic_open` gives its temporary for ``name``."""
    middle = filename.removeprefix(f".{name}.").removesuffix(".tmp")
    return filename == f".{name}.{middle}.tmp" and len(middle) == 32 and all(c in "0123456789abcdef" for c in middle)


def _read_plan(committed: Path) -> dict[str, Any] | None:
    try:
        plan: dict[str, Any] = json.loads((committed / PLAN_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # removed with the rest of the folder by a run killed as it cleaned up
    return plan


def _fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (skipped where a folder cannot be opened or synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_LOCKS_HELD: set[int] = set()  # descriptors of the folder locks this process holds


def _forget_locks_in_child() -> None:
    """After ``fork``: close the child's copies of the lock descriptors. A ``flock`` belongs to the open file, which
    a child (a data-loader worker) would otherwise keep locked after its parent is killed."""
    for fd in _LOCKS_HELD:
        os.close(fd)
    _LOCKS_HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


class _FolderLock:
    """An exclusive ``flock`` on ``folder/.robustlabels.lock``, which holds the owner's pid and is removed on release.

    Without ``fcntl`` (Windows) or ``flock`` support, runs go on unlocked. A forked child does not hold it.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:
            return
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                owner = _lock_owner(fd)
                os.close(fd)
                if error.errno in _BUSY_ERRNOS:
                    raise InputError(f"--out {str(self.path.parent)!r} is being written by another run (pid "
                                     f"{owner})") from None  # fmt: skip
                return  # no flock here (some network file systems): unlocked
            if _same_file(fd, self.path):
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                except OSError:
                    pass  # a full disk: the pid only names the owner to a refused run; the first real write fails
                self.fd = fd
                _LOCKS_HELD.add(fd)
            else:
                os.close(fd)  # its last owner removed it as this run opened it: lock the new one

    def release(self) -> None:
        if self.fd is None or self.fd not in _LOCKS_HELD:  # not locked, or a forked child's copy (closed)
            return
        _LOCKS_HELD.discard(self.fd)
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a run that opened this file sees that it is gone
        except OSError:
            pass  # a stale lock file is harmless: the lock is the flock, released below
        finally:
            os.close(self.fd)
            self.fd = None


def _lock_owner(fd: int) -> str:
    """The pid written in a lock file (its owner writes it just after locking: a short wait)."""
    for _ in range(5):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.02)
    return "unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) in the block; one received meanwhile is dropped. Only in the main thread."""
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None:  # not the main thread, or a handler installed outside Python (it could not be put back)
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


