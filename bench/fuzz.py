"""Command-level fuzzing: generated hostile inputs through the installed commands, real pipes.

    python bench/fuzz.py [--runs N | --seconds S] [--seed K] [--jobs J] [--keep DIR]

Every run is one command on one generated input (see tests/fuzz/generators.py):

- ``vm-snapshot --input X.xml`` (and ``--recover``): lying metrics, hostile times and names,
  hidden entity declarations, truncation;
- ``vm-plan`` on a mutated snapshot, with a generated constraints file (some naming guests
  and hosts that are gone, sometimes ``--strict-rules``) and a generated ``--state`` directory
  (its ``vmtools.state`` document, or now and then the ``vm-plan-state.json`` of an earlier
  version, read once), under a random objective;
- ``vm-apply --dry-run`` on a mutated plan, with a generated host map (hostile addresses);
- ``vm-gmetric --dry-run`` against stand-in ``xl`` output (names mimicking the fixed fields,
  huge and negative figures);
- ``vm-replay`` on a generated CSV trace and hosts file (hostile figures and times, carriage
  returns, a mistyped epoch), with a generated power model and hostile --repeat/--every;
- ``vm-status`` on a snapshot with a damaged ``RUNS/*/result.json`` (host error texts full of
  terminal escapes) and a damaged ``vmtools.state`` beside the runs;
- ``options``: a command given a hostile number (inf, nan, 1e10, -4) for one of its number
  options, through a flag, a ``VMTOOLS_*`` variable or vmtools.toml;
- ``limits``: endless inputs (``/dev/zero`` as a settings file, constraints or host map, a HOST
  of 300,000 metrics, a toolstack printing without end, --repeat 100000000).

Every run has an address space of at most 1 GiB (``RLIMIT_AS``, ``--memory-mib``): a reader
that grows without bound fails with MemoryError (a traceback or exit 70) instead of taking the
machine down, and the summary gives each command's peak resident memory.

A run fails the harness when the command exits 70, prints a traceback, leaves anything on
stdout while failing, prints more than one error line, sends a terminal control character to
stdout or stderr, or runs past its timeout (a hang).
The summary gives runs per command and exit code; failures are kept under ``--keep`` with the
command line to replay them. Exit status: 0 when no run failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzz import generators as gen  # noqa: E402

BIN = Path(sys.executable).parent
TIMEOUT = 60.0
COMMANDS = ("vm-snapshot", "vm-plan", "vm-apply", "vm-gmetric", "vm-replay", "vm-status",
            "options", "limits")
MEMORY_MIB = 1024
# Number options of each command that the "options" runs pick from (prog -> options).
NUMBER_OPTIONS = {
    "vm-plan": ["time-limit", "max-moved", "max-duration", "threads", "verbose", "seed"],
    "vm-replay": ["every", "step", "warm-up", "repeat"],
    "vm-snapshot": ["timeout", "stale-after"],
    "vm-status": ["timeout", "cpu-threshold"],
    "vm-apply": ["timeout", "parallel", "connect-timeout"],
}


def _script(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _env() -> dict:
    env = dict(os.environ)
    env.pop("VMTOOLS_CONFIG", None)
    env["XDG_CONFIG_HOME"] = "/nonexistent-vmtools-fuzz-config"
    return env


_PLAN_CACHE: dict[int, dict] = {}


def _plan_for(seed: int, snapshot_text: str, workdir: Path) -> dict | None:
    """A real plan of a valid snapshot (made once per seed bucket), to mutate."""
    key = seed % 8
    if key not in _PLAN_CACHE:
        proc = subprocess.run([_script("vm-plan"), "--objective", "consolidate",
                               "--time-limit", "5"], input=snapshot_text.encode(),
                              capture_output=True, timeout=TIMEOUT, env=_env(), cwd=workdir)
        if proc.returncode != 0:
            return None
        _PLAN_CACHE[key] = json.loads(proc.stdout)
    return _PLAN_CACHE[key]


def make_case(seed: int, command: str, workdir: Path) -> tuple[list[str], bytes | None, dict]:
    """The argv, stdin and extra environment of one run."""
    rng = random.Random(seed)
    env = {}
    if command == "vm-snapshot":
        path = workdir / "in.xml"
        path.write_bytes(gen.ganglia_xml(rng, hosts=rng.randrange(1, 12)))
        args = ["--input", str(path)] + (["--recover"] if rng.random() < 0.5 else [])
        return [_script(command), *args], None, env
    snap = gen.snapshot_doc(rng, hosts=rng.randrange(2, 7), vms=rng.randrange(1, 20))
    if command == "vm-plan":
        args = ["--objective", rng.choice(["consolidate", "balance", "repair"]),
                "--time-limit", "5"]
        if rng.random() < 0.6:
            cons = workdir / "rules.json"
            doc = gen.constraints_doc(rng, snap)
            cons.write_text(gen.mutate_json(rng, doc) if rng.random() < 0.3 else json.dumps(doc))
            args += ["--constraints", str(cons)]
            if rng.random() < 0.3:
                args.append("--strict-rules")
        if rng.random() < 0.3:
            state = workdir / "state"
            state.mkdir(exist_ok=True)
            # the vmtools.state document; now and then the file of an earlier version,
            # which is still read once
            name, doc = ("vmtools.state", gen.vmtools_state_doc(rng)) if rng.random() < 0.8 \
                else ("vm-plan-state.json", gen.state_doc(rng))
            (state / name).write_text(gen.mutate_json(rng, doc) if rng.random() < 0.5
                                      else json.dumps(doc))
            args += ["--state", str(state)]
        text = gen.mutate_json(rng, snap) if rng.random() < 0.5 else json.dumps(snap)
        return [_script(command), *args], text.encode(), env
    if command == "vm-apply":
        plan = _plan_for(seed, json.dumps(snap), workdir)
        if plan is None:
            return [_script("vm-apply"), "--dry-run"], b"{}", env
        hosts = workdir / "hosts.csv"
        hosts.write_text(gen.hostmap_text(rng, [h["name"] for h in plan["origin"]["hosts"]]))
        # Unreachable on purpose (closed loopback ports): a dry run must say 69, not hang.
        args = ["--dry-run", "--hosts", str(hosts), "--connect-timeout", "2",
                "--state-dir", str(workdir / "apply-state")]
        text = gen.mutate_json(rng, plan) if rng.random() < 0.5 else json.dumps(plan)
        return [_script(command), *args], text.encode(), env
    if command == "vm-replay":
        hosts_text, names = gen.hosts_csv(rng)
        (workdir / "h.csv").write_text(hosts_text)
        (workdir / "t.csv").write_text(gen.csv_trace(rng, names, guests=rng.randrange(1, 6),
                                                     samples=rng.randrange(1, 8)))
        args = ["t.csv", "--hosts", "h.csv", "--baseline",
                rng.choice(["none", "threshold", "thr-mmt"])]
        if rng.random() < 0.3:
            (workdir / "power.json").write_text(json.dumps(gen.power_model_doc(rng)))
            args += ["--power-model", "power.json"]
        if rng.random() < 0.3:
            args += [rng.choice(["--repeat", "--every", "--warm-up"]),
                     rng.choice(gen.HOSTILE_OPTION_NUMBERS)]
        return [_script(command), *args], None, env
    if command == "vm-status":
        runs = workdir / "runs"
        for k in range(rng.randrange(1, 3)):
            d = runs / f"2026120{k}T050000Z"
            d.mkdir(parents=True)
            doc = gen.result_doc(rng)
            (d / "result.json").write_text(gen.mutate_json(rng, doc) if rng.random() < 0.3
                                           else json.dumps(doc))
        (runs / ".plan-state").mkdir(parents=True, exist_ok=True)
        doc = gen.vmtools_state_doc(rng)
        (runs / ".plan-state" / "vmtools.state").write_text(
            gen.mutate_json(rng, doc) if rng.random() < 0.3 else json.dumps(doc))
        (workdir / "snap.json").write_text(json.dumps(snap))
        args = ["snap.json", "--runs", "runs", "-f", rng.choice(["table", "json"])]
        return [_script(command), *args], None, env
    if command == "options":
        prog = rng.choice(sorted(NUMBER_OPTIONS))
        option, value, how = gen.option_case(rng, NUMBER_OPTIONS[prog])
        args = ["missing.json"]
        if how == "flag":
            args = [f"--{option}", value, *args]
        elif how == "env":
            env["VMTOOLS_" + prog[3:].upper() + "_" + option.upper().replace("-", "_")] = value
        else:
            (workdir / "vmtools.toml").write_text(f"[{prog}]\n{option.replace('-', '_')} = "
                                                  f"{value if value[-1].isdigit() or value in ('inf', '-inf', 'nan') else repr(value)}\n")
            env["VMTOOLS_CONFIG"] = str(workdir / "vmtools.toml")
        return [_script(prog), *args], None, env
    if command == "limits":
        return _limit_case(rng, workdir, snap, env)
    # vm-gmetric against stand-in toolstack commands that print generated text
    bin_dir = workdir / "bin"
    bin_dir.mkdir(exist_ok=True)
    listing, _ = gen.xl_list(rng)
    (workdir / "list.txt").write_text(listing)
    (workdir / "info.txt").write_text(gen.xl_info(rng))
    (bin_dir / "xl").write_text(f"#!/bin/sh\ncase \"$1\" in list) cat {workdir}/list.txt;; "
                                f"info) cat {workdir}/info.txt;; *) exit 1;; esac\n")
    (bin_dir / "xenstore-read").write_text("#!/bin/sh\necho 1048576\n")
    for tool in ("xl", "xenstore-read"):
        (bin_dir / tool).chmod(0o755)
    env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '')}"
    args = ["--dry-run", "--toolstack", "xl", "--window", "0", "--gmond", "127.0.0.1:9"]
    return [_script(command), *args], None, env


def _limit_case(rng: random.Random, workdir: Path, snap: dict,
                env: dict) -> tuple[list[str], bytes | None, dict]:
    """One endless or oversized input (see the module)."""
    kind = rng.choice(["config", "constraints", "hostmap", "host-metrics", "xl", "repeat",
                       "every"])
    text = json.dumps(snap).encode()
    if kind == "config":
        env["VMTOOLS_CONFIG"] = "/dev/zero"
        return [_script("vm-plan")], text, env
    if kind == "constraints":
        return [_script("vm-plan"), "--constraints", "/dev/zero"], text, env
    if kind == "hostmap":
        return [_script("vm-apply"), "--dry-run", "--hosts", "/dev/zero"], b"{}", env
    if kind == "host-metrics":
        with open(workdir / "host.xml", "w") as fh:
            fh.write('<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond"><CLUSTER NAME="c">'
                     '<HOST NAME="h1" REPORTED="1765000000" TN="1" TMAX="20">\n')
            for i in range(rng.choice([60_000, 300_000])):
                fh.write(f'<METRIC NAME="container.vm.g{i}.cpu" VAL="1" TYPE="float"/>\n')
            fh.write("</HOST></CLUSTER></GANGLIA_XML>\n")
        return [_script("vm-snapshot"), "-i", "host.xml"], None, env
    if kind == "xl":
        bin_dir = workdir / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "xl").write_text("#!/bin/sh\nexec tr '\\0' x < /dev/zero\n")
        (bin_dir / "xl").chmod(0o755)
        env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '')}"
        return [_script("vm-gmetric"), "--dry-run", "--toolstack", "xl", "--window", "0",
                "--gmond", "127.0.0.1:9"], None, env
    (workdir / "h.csv").write_text("name,cpu,mem_mib\na,2,4096\n")
    (workdir / "t.csv").write_text("time,guest,cpu,mem_mib\n1764547200,g1,1,100\n"
                                   "1764547500,g1,1,100\n")
    extra = ["--repeat", "100000000"] if kind == "repeat" else ["--every", "1e-300"]
    return [_script("vm-replay"), "t.csv", "--hosts", "h.csv", "--baseline", "none",
            *extra], None, env


_CONTROL = set(range(0, 32)) - {10} | {127} | set(range(0x80, 0xA0))


def _controls(data: bytes) -> bool:
    text = data.decode("utf-8", "replace")
    return any(ord(ch) in _CONTROL for ch in text)


def judge(proc_rc: int | None, stdout: bytes, stderr: bytes, command: str = "") -> str | None:
    """Why this run breaks the promise, or None. ``vm-gmetric --dry-run`` exits 69 after
    printing what it did learn when the toolstack had problems (documented): not a failure."""
    err = stderr.decode("utf-8", "replace")
    if command == "vm-gmetric" and proc_rc == 69 and "the output shows what was known" in err:
        stdout = b""
    if proc_rc is None:
        return "hang (timeout)"
    if proc_rc == 70:
        return "exit 70"
    if "Traceback" in err:
        return "traceback"
    if "MemoryError" in err:
        return "MemoryError (over the address-space cap)"
    if _controls(stderr) or (command != "vm-snapshot" and _controls(stdout)):
        return "a control character reached the terminal"
    if proc_rc not in (0, 1) and stdout.strip():
        return f"exit {proc_rc} with output on stdout"
    if proc_rc not in (0, 1) and sum(1 for line in err.splitlines() if ": error: " in line) != 1:
        return f"exit {proc_rc} without exactly one error line"
    return None


def run_capped(argv: list[str], stdin: bytes | None, env: dict, cwd: Path,
               memory_mib: int = MEMORY_MIB) -> tuple[int | None, bytes, bytes, float]:
    """Run one command with its address space capped (RLIMIT_AS); (exit code or None on a
    timeout, stdout, stderr, peak resident MiB from ``wait4``)."""
    import resource

    def cap() -> None:
        limit = memory_mib * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
            tempfile.TemporaryFile() as ferr:
        fin.write(stdin or b"")
        fin.seek(0)
        child = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, env=env, cwd=cwd,
                                 preexec_fn=cap, start_new_session=True)
        t0 = time.monotonic()
        timed_out = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > TIMEOUT:
                timed_out = True
                os.killpg(child.pid, 9)
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.02)
        fout.seek(0)
        ferr.seek(0)
        rc = None if timed_out else os.waitstatus_to_exitcode(status)
        return rc, fout.read(), ferr.read(), usage.ru_maxrss / 1024


PEAK: dict[str, float] = {}


def one_run(seed: int, command: str, keep: Path | None) -> tuple[str, int | None, str | None]:
    with tempfile.TemporaryDirectory(prefix="vmtools-fuzz.") as tmp:
        workdir = Path(tmp)
        argv, stdin, extra = make_case(seed, command, workdir)
        env = _env()
        env.update(extra)
        rc, out, err, peak = run_capped(argv, stdin, env, workdir)
        PEAK[command] = max(PEAK.get(command, 0.0), peak)
        if os.environ.get("FUZZ_SHOW"):
            print(command, seed, rc, err.decode("utf-8", "replace")[-300:], file=sys.stderr)
        why = judge(rc, out, err, os.path.basename(argv[0]))
        if why and keep is not None:
            dest = keep / f"{command}-{seed}"
            shutil.copytree(workdir, dest, dirs_exist_ok=True)
            (dest / "stdin").write_bytes(stdin or b"")
            (dest / "argv.json").write_text(json.dumps(argv))
            (dest / "stderr").write_bytes(err)
            (dest / "why").write_text(why + "\n")
        return command, rc, why


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="runs in all (default: by --seconds)")
    ap.add_argument("--seconds", type=float, default=180.0, help="stop starting runs after this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--keep", type=Path, default=None, help="keep failing cases here")
    args = ap.parse_args(argv)
    commands = [c for c in args.commands.split(",") if c]
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    counts: collections.Counter = collections.Counter()
    failures: list[tuple[str, int, str]] = []
    slowest = 0.0

    def seeds():
        i = 0
        while args.runs is None or i < args.runs:
            if args.runs is None and time.monotonic() - started > args.seconds:
                return
            yield args.seed + i, commands[i % len(commands)]
            i += 1

    def task(item):
        t0 = time.monotonic()
        result = one_run(item[0], item[1], args.keep)
        return item[0], result, time.monotonic() - t0

    def record(result) -> None:
        nonlocal slowest
        seed, (command, rc, why), took = result
        counts[(command, rc)] += 1
        slowest = max(slowest, took)
        if why:
            failures.append((command, seed, why))
            print(f"FAIL {command} seed {seed}: {why}", file=sys.stderr)

    # At most 2 x jobs runs queued (Executor.map would take the whole endless seed stream).
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        queued: set = set()
        for item in seeds():
            queued.add(pool.submit(task, item))
            if len(queued) >= 2 * args.jobs:
                done, queued = wait(queued, return_when=FIRST_COMPLETED)
                for f in done:
                    record(f.result())
        for f in queued:
            record(f.result())
    total = sum(counts.values())
    print(f"{total} runs in {time.monotonic() - started:.0f} s (slowest run {slowest:.1f} s, "
          f"timeout {TIMEOUT:.0f} s), {len(failures)} failing")
    for command in commands:
        by_rc = {rc: n for (c, rc), n in sorted(counts.items(), key=lambda kv: str(kv[0][1]))
                 if c == command}
        print(f"  {command}: " + ", ".join(f"exit {rc}: {n}" for rc, n in by_rc.items())
              + f"; peak {PEAK.get(command, 0):.0f} MiB (cap {MEMORY_MIB} MiB)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
