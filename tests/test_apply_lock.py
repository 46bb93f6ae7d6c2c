"""vm-apply's locks (vmtools.apply.lock): exclusive, and no file left once a run lets go."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from vmtools.apply.lock import ClusterLock
from vmtools.errors import TemporaryFailure


def host(name: str, port: int = 8002) -> SimpleNamespace:
    return SimpleNamespace(name=name, address="127.0.0.1", port=port)


def lock(tmp_path: Path, *names: str) -> ClusterLock:
    return ClusterLock(tmp_path / "state", ["c1"], [host(n) for n in names],
                       lock_dir=tmp_path / "locks")


def test_a_host_held_by_one_run_refuses_another_and_no_file_outlives_the_runs(tmp_path):
    (tmp_path / "state").mkdir()
    first = lock(tmp_path, "n1", "n2")
    first.acquire()
    assert len(os.listdir(tmp_path / "locks")) == 2
    # another state directory (cron and an operator): the host locks still meet
    (tmp_path / "other").mkdir()
    second = ClusterLock(tmp_path / "other", ["c1"], [host("n2"), host("n3")],
                         lock_dir=tmp_path / "locks")
    with pytest.raises(TemporaryFailure, match=r"another vm-apply is running on host n2 "
                                               rf"\(pid {os.getpid()} since "):
        second.acquire()
    assert second.files == [] and len(os.listdir(tmp_path / "locks")) == 2
    first.release()
    second.acquire()
    assert len(os.listdir(tmp_path / "locks")) == 2
    second.release()
    assert os.listdir(tmp_path / "locks") == []
    assert os.listdir(tmp_path / "state") == [] and os.listdir(tmp_path / "other") == []


def test_many_hosts_over_many_runs_leave_an_empty_directory(tmp_path):
    (tmp_path / "state").mkdir()
    for i in range(50):
        run = lock(tmp_path, f"n{i}", f"n{i + 1}")
        run.acquire()
        run.release()
    assert os.listdir(tmp_path / "locks") == []


def test_a_file_left_by_a_killed_run_is_taken_over_and_removed(tmp_path):
    (tmp_path / "state").mkdir()
    run = lock(tmp_path, "n1")
    for path in run.paths:                  # what a run killed outright leaves: the files
        path.parent.mkdir(exist_ok=True)
        path.write_text("pid 1 since 2026-11-22T01:30:00Z\n")
    run.acquire()
    run.release()
    assert os.listdir(tmp_path / "locks") == [] and os.listdir(tmp_path / "state") == []


def _contend(args: tuple[str, str, int]) -> tuple[int, int]:
    """Take and let go of one host's lock ``rounds`` times; inside, claim a marker that only
    one process at a time may hold. Returns (rounds inside, rounds two were inside)."""
    base, marker, rounds = args
    import fcntl
    import time

    from vmtools.apply import lock as module

    class SlowToLock:
        """fcntl with a pause between opening a lock file and locking it: the moment another
        run may let go of the file and remove it, made wide enough to happen often."""
        LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN

        @staticmethod
        def flock(fh, how):
            if how & fcntl.LOCK_EX:
                time.sleep(0.0005)
            return fcntl.flock(fh, how)

    module.fcntl = SlowToLock            # in this child process only
    inside = overlaps = 0
    for _ in range(rounds):
        run = ClusterLock(Path(base) / f"state-{os.getpid()}", ["c1"], [host("n1")],
                          lock_dir=Path(base) / "locks")
        (Path(base) / f"state-{os.getpid()}").mkdir(exist_ok=True)
        try:
            run.acquire()
        except TemporaryFailure:
            continue
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            overlaps += 1
        else:
            inside += 1
            os.close(fd)
            os.unlink(marker)
        finally:
            run.release()
    return inside, overlaps


def test_runs_that_take_and_let_go_of_one_host_in_a_race_never_hold_it_together(tmp_path):
    """The file is removed by whoever lets go, while others have it open: a lock taken on
    the removed file must not count (else two runs would each think they hold the host)."""
    (tmp_path / "locks").mkdir()
    marker = str(tmp_path / "inside")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_contend, [(str(tmp_path), marker, 300)] * 4)
    assert sum(o for _, o in results) == 0
    assert sum(i for i, _ in results) > 0
    assert os.listdir(tmp_path / "locks") == []
