"""vm-plan's settings, each once: name, default, range, help and check.

Everything that takes a vm-plan setting derives from :data:`SETTINGS`: vm-plan's command-line
options (``cli/vm_plan.py`` builds them from this table), its ``VMTOOLS_PLAN_*`` variables and
``[vm-plan]`` table of vmtools.toml (named after those options), vm-replay's ``--plan "..."``
strings (:func:`parse_argv`), the planner front door (:class:`PlanSettings`) and the test that
man/vm-plan.1 states every default.

A setting is what the user chose. What a run works out on the way (the guests in cooldown, the
persistent hotspots, the demand estimates) is not a setting: see
:class:`vmtools.planner.options.RunFacts`.

Four settings name documents rather than values (``constraints``, ``hosts``,
``power_model``, ``state``: ``document=True``); the command reads them and hands the planner
what they hold (:class:`vmtools.planner.front.Documents`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Callable, Iterable, Mapping

from vmtools import numbers
from vmtools.errors import OptionError, UsageError
from vmtools.planner.demand import parse_demand
from vmtools.planner.options import HYSTERESIS, RELIEF_ROOM
from vmtools.sources.knowledge import DEFAULT_MAX_FROZEN
from vmtools.xen import DEFAULT_IMAGE_DIR

OBJECTIVES = ("auto", "consolidate", "balance", "repair")
CPU_DEMANDS = ("usage", "vcpus")


@dataclass(frozen=True)
class Setting:
    name: str                          # the core name; the flag is --name with '-' for '_'
    default: Any
    help: str
    kind: type = float                 # float, int, bool or str
    choices: tuple[str, ...] | None = None
    lo: float | None = None            # numbers: the range, lo excluded when lo_open
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False             # None is a value (the default decides later)
    document: bool = False             # names a file the command reads
    metavar: str | None = None
    short: str | None = None           # -P
    hidden: bool = False               # kept for old command lines, not in --help
    replay: bool = True                # may be in a vm-replay --plan string
    manual: bool = False               # a manual operation (vm-plan(1), MANUAL OPERATIONS)
    parse: Callable[[str], Any] | None = None   # text -> value, raising OptionError
    range_text: str | None = None      # how an out-of-range value is explained
    shown_default: str | None = None   # how the man page writes the default, if not str()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def man_default(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if isinstance(self.default, float) and self.default == int(self.default):
            return str(int(self.default))
        return str(self.default)


def _hotspot_window(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,6})/(\d{1,6})", str(text).strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise OptionError("hotspot_window", f"{text}: expected K/N with 1 <= K <= N, e.g. 3/5")
    return int(m.group(1)), int(m.group(2))


def _guest_host(name: str, text: str, host_needed: bool) -> tuple[str, str | None]:
    guest, sep, host = str(text).partition(":")
    if not guest or (host_needed and not host) or (sep and not host):
        form = "GUEST:HOST" if host_needed else "GUEST[:HOST]"
        raise OptionError(name, f"{text}: expected {form}")
    return guest, host or None


FRACTION = "expected a fraction in (0, 1]"

def _under_cpu_target(name: str, below: float, help: str) -> Setting:
    """A target of auto's under --cpu-target (:func:`vmtools.planner.options.
    under_cpu_target`): by default ``below`` under it."""
    return Setting(name, None, optional=True, lo=0.0, lo_open=True, hi=1.0, metavar="FRACTION",
                   range_text=FRACTION, shown_default=f"{below:g} below --cpu-target",
                   help=f"{help} Default: {below:g} below --cpu-target (at least half of it).")


SETTINGS: tuple[Setting, ...] = (
    Setting("objective", "auto", kind=str, choices=OBJECTIVES, help=(
        "auto (for cron): repair broken rules, relieve persistent CPU or memory hotspots, then "
        "empty whole hosts worth emptying (a guest no host has the memory for may go where a "
        "smaller guest is moved aside), within --max-migrations, --max-moved and "
        "--max-duration; consolidate: fewest active hosts, then least memory migrated; "
        "balance: end hotspots with the fewest migrations; repair: only satisfy the rules and "
        "end overloads.")),
    Setting("constraints", None, kind=str, optional=True, document=True, metavar="FILE", help=(
        "A vmtools.constraints document (ban, fence, pin, spread, gather, maintenance, "
        "max_vms, capacity, priority); echoed in the plan. A rule naming a guest or host that is not in "
        "the snapshot loses those names (a warning, and rules_skipped in the plan).")),
    Setting("strict_rules", False, kind=bool, help=(
        "Refuse (exit 65) a constraints file naming a guest or host that is not in the "
        "snapshot, instead of skipping those names.")),
    Setting("cross_domain", False, kind=bool, help=(
        "Allow moves between migration domains (the snapshot hosts' domain: Ganglia clusters, "
        "XAPI pools), for a platform that migrates across them (XAPI cross-pool migration "
        "with storage); off, every guest stays in its domain.")),
    Setting("time_limit", 60.0, lo=0.0, lo_open=True, metavar="SECONDS", help=(
        "Time budget of the whole run (solver, ordering, checks); consolidation gives each "
        "stage a share."), range_text="must be more than 0"),
    Setting("solver", "cbc", kind=str, metavar="NAME", help=(
        "cbc (PuLP's bundled CBC, else cbc on PATH), highs (needs highspy) or another solver "
        "PuLP knows.")),
    Setting("threads", 1, kind=int, lo=1, help="Solver threads."),
    Setting("jobs", 0, kind=int, lo=0, metavar="N", range_text="must be 0 (one per CPU) or more",
            help=(
                "Worker processes for a plan made in parts: a snapshot of several migration "
                "domains (without --cross-domain) is planned domain by domain, and under "
                "consolidate a domain of 30,000 guests or more in partitions of about 10,000 "
                "that cut no rule; each part gets a share of --time-limit by its guests, the "
                "plans are merged and checked whole (0: one per CPU; 1: one after the other in "
                "the vm-plan process).")),
    Setting("cpu_target", 0.8, lo=0.0, lo_open=True, hi=1.0, metavar="FRACTION", help=(
        "consolidate, auto: keep each host's CPU use at most this fraction of its CPUs "
        "(headroom); auto also relieves a CPU hotspot down to it."), range_text=FRACTION),
    _under_cpu_target("consolidate_target", HYSTERESIS, (
        "auto: consolidation fills a host's CPU only to this fraction of its CPUs, never "
        "above --cpu-target, so a host it fills has room to grow before it is a hotspot "
        "(reliefs fill to --relief-target, then --cpu-target: the two do not undo each "
        "other).")),
    _under_cpu_target("relief_target", RELIEF_ROOM, (
        "auto: a relief puts a guest on an active host that stays under this fraction of "
        "its CPUs where one has room, else on one that stays under --cpu-target, so the "
        "host it fills is not the next hotspot; never above --cpu-target.")),
    Setting("mem_target", None, optional=True, lo=0.0, lo_open=True, hi=1.0,
            metavar="FRACTION", range_text=FRACTION, shown_default="0.9", help=(
                "consolidate, auto: keep each host's memory use at most this fraction of its "
                "memory; auto also relieves a memory hotspot down to it. Default: 0.9 under "
                "auto, 1 under consolidate.")),
    Setting("cpu_threshold", 0.9, lo=0.0, lo_open=True, hi=1.0, metavar="FRACTION",
            range_text=FRACTION,
            help="balance, auto: a host above this fraction of its CPUs is a hotspot."),
    Setting("mem_threshold", 0.95, lo=0.0, lo_open=True, hi=1.0, metavar="FRACTION",
            range_text=FRACTION,
            help="balance, auto: a host above this fraction of its memory is a hotspot."),
    Setting("min_gain", 0.05, lo=0.0, hi=1.0, hi_open=True, metavar="FRACTION",
            range_text="expected a fraction in [0, 1)", help=(
                "balance, auto: relieve a hotspot only when the worst utilisation (CPU or "
                "memory, whichever is higher) drops by at least this much.")),
    Setting("max_migrations", 40, kind=int, lo=0, metavar="N", help=(
        "auto: at most N migrations per run (0: no limit); the rest is left to later runs "
        "(summary.deferred)."), range_text="must be 0 (no limit) or more"),
    Setting("max_moved", 50.0, lo=0.0, metavar="GIB", range_text="must be 0 (no limit) or more",
            help="auto: at most this much guest memory migrated per run (0: no limit)."),
    Setting("max_duration", 4.0, lo=0.0, metavar="MINUTES",
            range_text="must be 0 (no limit) or more", help=(
                "auto: the plan's estimated duration (with --bandwidth and --parallel) at most "
                "this long (0: no limit); keep it under the cron interval.")),
    Setting("cpu_demand", "usage", kind=str, choices=CPU_DEMANDS, help=(
        "usage: measured CPU use; vcpus: allocated virtual CPUs (Entropy's 'simplify').")),
    Setting("max_frozen", DEFAULT_MAX_FROZEN, lo=0.0, hi=1.0, metavar="FRACTION",
            range_text="expected a fraction in [0, 1]", help=(
                "A host a snapshot problem names is frozen: nothing moves onto it, its guests "
                "stay (one may leave only to end an overload its known guests alone cause). "
                "With more than this fraction of the hosts frozen by problems of their own, or "
                "of the guests stale or unknown, monitoring is broken: plan nothing, "
                "exit 75.")),
    Setting("refuse_problems", False, kind=bool, help=(
        "Refuse (exit 65) any snapshot with problems, instead of planning around them "
        "(vmtools before 0.2).")),
    Setting("allow_problems", False, kind=bool, hidden=True,
            help="Ignored: planning around problems is the default now."),
    Setting("require_optimal", False, kind=bool, help=(
        "Refuse (exit 75) a plan not proven optimal within --time-limit.")),
    Setting("bandwidth", 1000.0, lo=0.0, lo_open=True, metavar="MBIT/S",
            range_text="must be more than 0",
            help="Migration bandwidth, for the estimated duration."),
    Setting("parallel", 2, kind=int, lo=1, metavar="N", short="-P", help=(
        "Migrations run at once (as vm-apply --parallel), for the estimated duration.")),
    Setting("explain", False, kind=bool, help="Add an explain object: why each guest moves."),
    Setting("state", None, kind=str, optional=True, document=True, metavar="DIR", help=(
        "Keep hotspot history, recent moves, each guest's CPU samples and the hosts switched "
        "off here between runs (cron), in one vmtools.state document; obey the hosts in "
        "maintenance recorded here (DIR/maintenance.json, written by vm-web).")),
    Setting("demand", "max", kind=str, metavar="last|mean|pNN|max", parse=parse_demand, help=(
        "With --state, or a snapshot carrying samples (vm-snapshot --prometheus): plan on "
        "this statistic of each guest's CPU samples over --demand-window (never below the "
        "last sample).")),
    Setting("demand_window", 120.0, lo=0.0, lo_open=True, metavar="MINUTES",
            range_text="must be more than 0", help=(
                "With --state or a snapshot's samples: how far back --demand looks (chosen "
                "from replays: see vm-plan(1)).")),
    Setting("consolidate_window", None, optional=True, lo=0.0, lo_open=True, metavar="MINUTES",
            range_text="must be more than 0", shown_default="--demand-window", help=(
                "With --state or a snapshot's samples: auto's consolidation fills a host only "
                "where --demand of its guests summed over this many minutes also stays under "
                "--cpu-target (over --demand-window: under --consolidate-target), so it does "
                "not fill a host whose room opened only lately; hotspots and reliefs look back "
                "--demand-window. Default: --demand-window, off (replays: see vm-plan(1)).")),
    Setting("forecast", 0.0, lo=0.0, hi=10.0, metavar="K",
            range_text="expected 0 (off) to 10", help=(
                "With --state or a snapshot's samples: also plan on the forecast of the next "
                "interval from the samples over --demand-window (under auto each host's "
                "guests' summed, elsewhere each guest's own): their exponentially weighted "
                "mean plus K times the weighted mean of its past one-step errors (guests whose "
                "swings coincide need more room); never below --demand's estimate (0: off).")),
    Setting("hotspot_window", "3/5", kind=str, metavar="K/N", parse=_hotspot_window, help=(
        "With --state: balance acts on a hotspot seen in at least K of the last N snapshots "
        "(Sandpiper's rule).")),
    Setting("hold", 0.0, lo=0.0, metavar="MINUTES", range_text="must be 0 (off) or more", help=(
        "With --state: also act on a hotspot that has lasted this long, however few snapshots "
        "saw it (0: off).")),
    Setting("cooldown", 30.0, lo=0.0, metavar="MINUTES", range_text="must be 0 or more", help=(
        "With --state: a guest seen to move this recently is not moved again, except to obey "
        "a hard rule.")),
    Setting("settle", 60.0, lo=0.0, metavar="MINUTES", range_text="must be 0 or more", help=(
        "With --state, auto: a guest seen to move this recently is not moved by "
        "consolidation (relief and repairs may still move it once --cooldown is over), so no "
        "host just filled is emptied again.")),
    Setting("power", False, kind=bool, help=(
        "Also switch hosts off (power-off) and on (power-on): emptied hosts go to standby, "
        "standby hosts wake when room is needed. On by default under --objective auto when "
        "--hosts gives hosts a power method.")),
    Setting("hosts", None, kind=str, optional=True, document=True, metavar="FILE", help=(
        "The host map (as vm-apply's): only hosts whose power column is ipmi or wol are "
        "switched off. Without it --power may switch any host.")),
    Setting("standby_after", 0.0, lo=0.0, metavar="MINUTES", range_text="must be 0 or more",
            help=("With --power: switch off a host only once it has been empty this long "
                  "(needs --state; 0, the default: as soon as the plan empties it, after its "
                  "last guest has left).")),
    Setting("min_hosts", 1, kind=int, lo=0, metavar="N",
            help="With --power: never fewer online hosts per cluster."),
    Setting("reserve", 1.0, lo=0.0, metavar="HOSTS", range_text="must be 0 or more", help=(
        "With --power: keep this many hosts' worth (the largest online host's CPU and memory) "
        "free online; 1 = N+1.")),
    Setting("power_model", None, kind=str, optional=True, document=True, metavar="FILE",
            help=("A vmtools.power document: consolidation prefers the hosts that draw least "
                  "for the capacity they give; hungriest hosts are switched off first, most "
                  "frugal woken first.")),
    Setting("boot_timeout", 600.0, lo=0.0, lo_open=True, metavar="SECONDS",
            range_text="must be more than 0", help=(
                "With --power: a woken host that has not reported this long after its "
                "power-on failed to boot; it is not woken again until it reports.")),
    Setting("seed", 0, kind=int, metavar="N",
            help="Seed of the candidate-host sampling (plans are reproducible)."),
    Setting("migrate", None, kind=str, optional=True, manual=True, replay=False,
            metavar="GUEST:HOST", parse=lambda t: _guest_host("migrate", t, True), help=(
                "Plan one live migration of GUEST to HOST, checked like any plan (rules, "
                "capacity at every moment, frozen hosts); no objective is run.")),
    Setting("suspend", None, kind=str, optional=True, manual=True, replay=False,
            metavar="GUEST", help=("Plan the suspend of GUEST to its image "
                                   "IMAGE_DIR/GUEST.save (its memory is freed when the save "
                                   "ends).")),
    Setting("resume", None, kind=str, optional=True, manual=True, replay=False,
            metavar="GUEST[:HOST]", parse=lambda t: _guest_host("resume", t, False), help=(
                "Plan the resume of a guest vm-apply suspended (--suspended), or one the "
                "snapshot reports suspended, on HOST, or on the host with room the rules "
                "allow (the one it left first, then the emptiest); through libvirt only "
                "the host that suspended it (its managed save is there).")),
    Setting("checkpoint", None, kind=str, optional=True, manual=True, replay=False,
            metavar="GUEST", help=("Plan a checkpoint of GUEST to IMAGE_DIR/GUEST-TIME.chk "
                                   "(it keeps running).")),
    Setting("evacuate", None, kind=str, optional=True, manual=True, replay=False,
            metavar="HOST", help=(
                "Plan the migrations that empty HOST (a maintenance rule on it, the repair "
                "objective): the fewest moves the rules and capacity allow.")),
    Setting("add", None, kind=str, optional=True, manual=True, replay=False, document=True,
            metavar="FILE", help=(
                "Provision the new guests of a vmtools.guests document all or nothing under "
                "the rules, --objective, --cpu-target and --mem-target, waking standby hosts if "
                "that is what it takes: one create action per guest, naming its host. A group "
                "that cannot fit exits 1 saying why, nothing on stdout.")),
    Setting("context_switch", False, kind=bool, help=(
        "auto: when the guests want more CPU than every host (standby ones too) can give, "
        "suspend the fewest lowest-priority guests (priority rules) that end it, and resume "
        "them, most important first, once room returns; a run that suspends or resumes does "
        "nothing else.")),
    Setting("suspend_above", 1.0, lo=0.0, lo_open=True, hi=4.0, metavar="FRACTION", help=(
        "With --context-switch: suspend when the CPU demand exceeds this fraction of the "
        "cluster's CPUs (standby hosts counted), down to --resume-below.")),
    Setting("resume_below", 0.8, lo=0.0, lo_open=True, hi=4.0, metavar="FRACTION", help=(
        "With --context-switch: resume a guest only while the demand with it stays within "
        "this fraction of the cluster's CPUs (hysteresis).")),
    Setting("resume_after", 15.0, lo=0.0, metavar="MINUTES", range_text="must be 0 or more",
            help="With --context-switch: a guest stays suspended at least this long."),
    Setting("image_dir", DEFAULT_IMAGE_DIR, kind=str, replay=False, metavar="DIR", help=(
        "Where suspend and checkpoint images go: the directory every host shares at this "
        "path (as vm-apply --image-dir).")),
    Setting("suspended", None, kind=str, optional=True, replay=False, document=True,
            metavar="FILE", help=(
                "The suspended-guests ledger --resume reads (default: vm-apply's, "
                "STATE_DIR/suspended.json under $VMTOOLS_STATE_DIR or /var/lib/vmtools).")),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_FLAG: dict[str, Setting] = {**{s.flag: s for s in SETTINGS},
                               **{s.short: s for s in SETTINGS if s.short}}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check(setting: Setting, value: Any) -> Any:
    """``value`` (typed, or text from an environment variable, a settings file or a
    ``--plan`` string) as the setting's type, checked; OptionError naming the setting."""
    s = setting
    if value is None:
        if s.optional:
            return None
        raise OptionError(s.name, "needs a value")
    if s.kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise OptionError(s.name, f"{value!r}: expected true or false")
    if s.kind is str:
        value = getattr(value, "value", value)        # an enum member of the command line
        if not isinstance(value, str):
            raise OptionError(s.name, f"{value!r}: expected text")
        if s.choices is not None and value not in s.choices:
            raise OptionError(s.name, f"{value!r}: expected one of {', '.join(s.choices)}")
        if s.parse is not None:
            s.parse(value)                           # checked; kept as written
        return value
    if isinstance(value, str):
        try:
            value = int(value.strip()) if s.kind is int else float(value.strip())
        except ValueError:
            raise OptionError(s.name, f"{value!r}: expected "
                              f"{'an integer' if s.kind is int else 'a number'}") from None
    if s.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    bad = numbers.problem(value, integer=s.kind is int,
                          hi=numbers.UINT32_MAX if s.kind is int else numbers.MAX_OPTION,
                          lo=-numbers.MAX_OPTION if s.kind is float else -numbers.UINT32_MAX)
    if bad:
        raise OptionError(s.name, bad.replace("expected", "must be", 1))
    low_bad = s.lo is not None and (value <= s.lo if s.lo_open else value < s.lo)
    high_bad = s.hi is not None and (value >= s.hi if s.hi_open else value > s.hi)
    if low_bad or high_bad:
        if s.range_text:
            raise OptionError(s.name, f"{_shown(value)}: {s.range_text}")
        bound = f">= {_shown(s.lo)}" if low_bad else f"<= {_shown(s.hi)}"
        raise OptionError(s.name, f"{_shown(value)}: must be {bound}")
    return value


def _field_type(s: Setting) -> Any:
    return (s.kind | None) if s.optional else s.kind


# The settings of one vm-plan run, typed and checked (build it with settings_from).
PlanSettings = make_dataclass(
    "PlanSettings", [(s.name, _field_type(s), field(default=s.default)) for s in SETTINGS],
    frozen=True)
PlanSettings.__module__ = __name__
PlanSettings.__doc__ = "The settings of one vm-plan run (each field a setting of SETTINGS)."


def settings_from(values: Mapping[str, Any] | None = None, **more: Any) -> Any:
    """A checked :class:`PlanSettings` from ``values`` (setting name -> value, typed or as
    text); the rest keep their defaults. OptionError for an unknown name or a bad value,
    UsageError for settings that contradict each other."""
    given = dict(values or {}, **more)
    out = {}
    for name, value in given.items():
        setting = BY_NAME.get(name)
        if setting is None:
            raise OptionError(name, "is not a vm-plan setting")
        out[name] = check(setting, value)
    settings = PlanSettings(**out)
    if settings.context_switch and settings.objective != "auto":
        raise UsageError("{context_switch} works with {objective} auto",
                         settings=("context_switch", "objective"))
    if settings.context_switch and not settings.resume_below < settings.suspend_above:
        raise UsageError(f"{{resume_below}} {settings.resume_below:g} and {{suspend_above}} "
                         f"{settings.suspend_above:g}: expected 0 < resume-below < "
                         "suspend-above <= 4", settings=("resume_below", "suspend_above"))
    return settings


def as_dict(settings: Any) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def hotspot_window(settings: Any) -> tuple[int, int]:
    return _hotspot_window(settings.hotspot_window)


def manual_operation(settings: Any) -> tuple[str, str, str | None] | None:
    """The one manual operation ``settings`` ask for, as (setting, guest or host or file,
    host or None), or None; a UsageError when there are two."""
    given = [s for s in SETTINGS if s.manual and getattr(settings, s.name) is not None]
    if len(given) > 1:
        raise UsageError(f"{given[0].flag} and {given[1].flag}: one manual operation per plan")
    if not given:
        return None
    s = given[0]
    value = getattr(settings, s.name)
    if s.parse is not None:
        first, second = s.parse(value)
        return s.name, first, second
    return s.name, value, None


LOG_FLAGS = frozenset({"-v", "--verbose", "-vv", "-q", "--quiet", "--debug"})
OUTPUT_FLAGS = frozenset({"-o", "--output", "-f", "--format", "-h", "--help", "--version"})


def parse_argv(argv: Iterable[str]) -> dict[str, Any]:
    """vm-plan options as a command line writes them (``--objective balance``,
    ``--time-limit=30``, ``-P 4``, ``--power``) -> {setting: text or True}. A word that is no
    option, an unknown option or a missing value is a UsageError naming it."""
    words = list(argv)
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        flag, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        setting = BY_FLAG.get(flag)
        if setting is None:
            if not word.startswith("-") or word == "-":
                raise UsageError(f"{word!r}: no input file: the replay gives vm-plan each "
                                 "tick's snapshot")
            if flag in LOG_FLAGS:
                continue                  # the replay's own -v, -q, --debug decide
            if flag in OUTPUT_FLAGS:
                raise UsageError(f"{flag} has no place here: the replay prints one document")
            raise UsageError(f"no such option: {flag}")
        if not setting.replay:
            raise UsageError(f"{flag} has no place here: a replay runs the planner's "
                             "objectives, not one operation")
        if setting.kind is bool:
            if eq:
                raise UsageError(f"option {flag} does not take a value")
            out[setting.name] = True
            continue
        if eq:
            out[setting.name] = inline
        elif i < len(words):
            out[setting.name] = words[i]
            i += 1
        else:
            raise UsageError(f"option {flag} requires an argument")
    return out


__all__ = ["SETTINGS", "BY_NAME", "Setting", "PlanSettings", "settings_from", "check",
           "parse_argv", "as_dict", "hotspot_window", "OBJECTIVES", "CPU_DEMANDS"]
