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


def test_a_plan_over_two_domains_holds_both_and_meets_a_one_domain_run_on_a_shared_host(
        tmp_path):
    for d in ("state", "other"):
        (tmp_path / d).mkdir()
    both = ClusterLock(tmp_path / "state", ["west", "east"], [host("n1"), host("n3")],
                       lock_dir=tmp_path / "locks", host_domain={"n1": "east", "n3": "west"})
    assert [p.name for p in both.paths[:2]] == ["apply-east.lock", "apply-west.lock"]
    both.acquire()
    west = ClusterLock(tmp_path / "state", ["west"], [host("n4")], lock_dir=tmp_path / "locks",
                       host_domain={"n4": "west"})
    with pytest.raises(TemporaryFailure, match=r"another vm-apply is running on migration "
                                               r"domain 'west' \(pid \d+ since "):
        west.acquire()
    # another state directory: the host n3 of west is held whatever else either plan touches
    n3 = ClusterLock(tmp_path / "other", ["west"], [host("n3")], lock_dir=tmp_path / "locks",
                     host_domain={"n3": "west"})
    with pytest.raises(TemporaryFailure, match="another vm-apply is running on host n3"):
        n3.acquire()
    both.release()
    n3.acquire()
    west.acquire()                  # the two-domain run let go of west: the next one runs
    n3.release()
    west.release()
    assert os.listdir(tmp_path / "locks") == [] and os.listdir(tmp_path / "state") == []


def _suspend_many(args: tuple[str, str, int]) -> None:
    """Record ``count`` suspended guests of this process in the ledger of ``state_dir``, as a
    vm-apply on one migration domain does."""
    state_dir, prefix, count = args
    from vmtools.apply import lifecycle
    run = SimpleNamespace(state_dir=state_dir, problems=[])
    for i in range(count):
        name = f"{prefix}{i}"
        entry = {"name": name, "host": "n1", "image": f"/var/lib/xen/save/{name}.save",
                 "mem_mib": 512, "vcpus": 1, "cpu": 0.1, "suspended": "2026-12-07T08:00:00Z"}
        lifecycle._update(run, lambda g, n=name, e=entry: g.__setitem__(n, e))
    assert run.problems == []


def test_runs_on_two_domains_sharing_a_state_directory_lose_no_suspended_guest(tmp_path):
    """Runs on different domains now go on together: the ledger they share is rewritten by
    one at a time."""
    from vmtools.apply.lifecycle import ledger_path, read_suspended
    with multiprocessing.get_context("fork").Pool(3) as pool:
        pool.map(_suspend_many, [(str(tmp_path), p, 25) for p in ("east", "west", "north")])
    guests = read_suspended(ledger_path(tmp_path))
    assert sorted(guests) == sorted(f"{p}{i}" for p in ("east", "west", "north")
                                    for i in range(25))
    assert sorted(os.listdir(tmp_path)) == ["suspended.json"]


def test_hosts_of_two_xapi_pools_with_the_same_names_never_block_each_other(tmp_path):
    """A XAPI pool's hosts are all reached through their master: two pools (two estates, or
    two simulated pools side by side) with a host named node-1 are two hosts, while two runs
    on one pool's node-1 still meet."""
    for state in "abc":
        (tmp_path / state).mkdir()

    def xapi_lock(state: str, master: str) -> ClusterLock:
        node = SimpleNamespace(name="node-1", address="node-1", port=443, transport="xapi")
        return ClusterLock(tmp_path / state, ["pool"], [node], lock_dir=tmp_path / "locks",
                           pool_master=master)
    first = xapi_lock("a", "https://127.0.0.1:4431")
    first.acquire()
    other_pool = xapi_lock("b", "https://127.0.0.1:4432")
    other_pool.acquire()
    same_pool = xapi_lock("c", "https://127.0.0.1:4431")
    with pytest.raises(TemporaryFailure, match="another vm-apply is running on host node-1"):
        same_pool.acquire()
    first.release()
    other_pool.release()
    assert os.listdir(tmp_path / "locks") == []
