"""vm-apply without its command line: run a plan's migrations safely.

- :mod:`.options` -- :class:`ApplyOptions`, the settings;
- the ``--hosts`` CSV (where to reach each host) is :mod:`vmtools.drivers.hostmap`;
- :mod:`.refuse` -- what is refused before anything is touched (and the replay checker);
- :mod:`.lock` -- one vm-apply per cluster; :mod:`.journal` -- the event log, for resuming;
- :mod:`.run` -- :func:`apply_plan` and the run itself (the scheduler, each action, what
  the hosts say); :mod:`.report` -- each action's outcome and the report's summary;
- :mod:`.ask` -- asking the hosts what they run and where a guest is;
- :mod:`.order` -- which ready action starts first;
- :mod:`.signals` -- SIGINT/SIGTERM reach the run instead of killing it (it then starts
  nothing new: :meth:`.run.Run.interrupted`).
"""

from vmtools.apply.options import DEFAULT_STATE_DIR, ApplyOptions, default_state_dir
from vmtools.apply.run import apply_plan

__all__ = ["ApplyOptions", "DEFAULT_STATE_DIR", "apply_plan", "default_state_dir"]
