"""vm-replay without its command line: recorded history (snapshots, a CSV trace, Ganglia RRDs)
replayed through vm-plan settings and built-in baselines in simulated time.

* :mod:`.trace`: what a replay reads, whatever its source (hosts, starting placement, demand
  samples over time);
* :mod:`.sources`: snapshot directories and CSV traces into a :class:`~.trace.Trace`;
  :mod:`.rrd`: gmetad's RRD files, read with rrdtool;
* :mod:`.engine`: the simulation (cron ticks, plans executed with vm-apply's scheduling rules)
  and its figures;
* :mod:`.baselines`: none, threshold, sandpiper, thr-mmt;
* :mod:`.report`: every setting over a trace into the ``vmtools.replay`` document, and its
  table; :mod:`.html`: the page.
"""
