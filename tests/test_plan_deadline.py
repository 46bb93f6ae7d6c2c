"""The run's one deadline: every stage's share comes from it, with one floor."""

from __future__ import annotations

import math
import time

from vmtools.planner.deadline import MIN_SOLVE_SECONDS, Deadline


def test_shares_are_fractions_of_what_is_left_with_one_floor():
    d = Deadline.after(10.0)
    assert 3.9 < d.share(0.4) <= 4.0
    assert 9.9 < d.share() <= 10.0
    past = Deadline(time.monotonic() - 5)
    assert past.passed() and past.left() == 0.0
    assert past.share(0.4) == past.share() == MIN_SOLVE_SECONDS


def test_a_part_ends_before_the_whole_and_leaves_the_rest():
    d = Deadline.after(20.0)
    first = d.part(0.5)
    assert first.at < d.at
    assert 9.9 < first.left() <= 10.0
    assert not first.passed()


def test_the_run_keeps_a_reserve_for_ordering_and_checking():
    # 30 % of a short limit, else 1 s + 1 s per 1,000 guests
    assert 6.9 < Deadline.for_run(10.0, 30_000).left() <= 7.0
    assert 7.9 < Deadline.for_run(10.0, 1_000).left() <= 8.0
    assert 56.9 < Deadline.for_run(60.0, 2_000).left() <= 57.0


def test_no_deadline_never_passes_and_floats_still_work():
    forever = Deadline.of(math.inf)
    assert not forever.passed() and forever.left() == math.inf
    assert forever.part(0.5) is forever
    assert Deadline.of(forever) is forever


def test_a_stage_that_stops_at_any_moment_takes_no_floor():
    past = Deadline(time.monotonic() - 5)
    assert past.share(0.25, floor=0) == 0.0
    assert past.part(0.25, floor=0).at <= time.monotonic()
    assert Deadline.after(10.0).part(0.05, floor=0).left() <= 0.5
