"""The lab's scenario clock (vmtools/lab/clock.py): a test holds it at a chosen second and the
guests' load is that second's at once, whatever the wall clock does; released, it runs on."""

from __future__ import annotations

import time

import pytest

from vmtools.lab.clock import ScenarioClock
from vmtools.lab.run import Lab
from vmtools.lab.scenario import guest_loads, load_scenario, state_from_scenario


class Wall:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_running_clock_follows_the_wall_clock_from_its_start():
    wall = Wall()
    clock = ScenarioClock(wall=wall)
    clock.start()
    wall.t += 7.5
    assert clock.now() == 7.5 and not clock.held


def test_a_held_clock_stays_at_its_second_and_moves_only_when_told():
    wall, changes = Wall(), []
    clock = ScenarioClock(on_change=lambda: changes.append(clock.now()), wall=wall)
    clock.start()
    assert clock.hold(12) == 12.0
    wall.t += 3600                         # however slow the machine
    assert clock.now() == 12.0 and clock.held
    assert clock.advance(2) == 14.0
    assert changes == [12.0, 14.0]         # the lab's load set at each new second
    clock.release()                        # runs on from 14, not from the wall's hour
    wall.t += 1
    assert clock.now() == 15.0 and not clock.held and changes[-1] == 14.0


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_a_clock_is_never_held_before_the_start_or_at_no_second(bad):
    clock = ScenarioClock(wall=Wall())
    with pytest.raises(ValueError):
        clock.hold(bad)
    with pytest.raises(ValueError):
        clock.advance(bad)
    assert not clock.held


def test_a_lab_held_in_a_pulse_gives_the_guests_its_load_until_moved(tmp_path):
    scenario = load_scenario("steady")
    scenario["load"] = [{"guests": ["web2"], "shape": "pulse", "period": 10, "on": 3,
                         "load": [3.5]}]
    lab = Lab(scenario, workdir=tmp_path / "lab")
    lab.dir.mkdir()
    lab.state.write(state_from_scenario(scenario))
    lab._start_clock()                     # the clock and its load driver, no daemon
    try:
        def web2() -> float:
            return lab.state.read()["hosts"]["node-2"]["domains"]["web2"]["load"]
        lab.clock.hold(11)
        assert web2() == 3.5 == guest_loads(scenario, 11)["web2"]
        time.sleep(1.2)                    # the driver's ticks (every 0.5 s) keep the second
        assert web2() == 3.5
        lab.clock.advance(2)               # second 13: the pulse is over
        assert web2() == 0.15
    finally:
        lab.stop()
