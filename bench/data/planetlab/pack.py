"""Pack one of CloudSim's PlanetLab days as bench/data/planetlab/<day>.txt.gz.

    python bench/data/planetlab/pack.py CLOUDSIM_GIT_DIR DAY [COMMIT]

Reads ``modules/cloudsim-examples/src/main/resources/workload/planetlab/<DAY>/`` at COMMIT
(default 476ceef2c0ffe02e0b637bbeed4d6805dbd1707a) of a clone of
https://github.com/Cloudslab/cloudsim with git itself, and writes one line per file, names
sorted: ``name,v1 v2 ... v288`` (the values verbatim, a ',' in a name written '_'), gzip level
9 with no time stamp, so the same commit always gives the same bytes (README.md here).
"""

import gzip
import subprocess
import sys

BASE = "modules/cloudsim-examples/src/main/resources/workload/planetlab"


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          check=True).stdout


def pack(repo: str, day: str, commit: str) -> bytes:
    listing = _git(repo, "ls-tree", "--name-only", commit, f"{BASE}/{day}/").split("\n")
    names = sorted(n.rsplit("/", 1)[1] for n in listing if n)
    lines = []
    for name in names:
        values = _git(repo, "show", f"{commit}:{BASE}/{day}/{name}").split()
        if len(values) != 288:
            raise SystemExit(f"{day}/{name}: {len(values)} values, not 288")
        lines.append(name.replace(",", "_") + "," + " ".join(values) + "\n")
    return gzip.compress("".join(lines).encode("utf-8"), 9, mtime=0)


if __name__ == "__main__":
    repo, day = sys.argv[1], sys.argv[2]
    commit = sys.argv[3] if len(sys.argv) > 3 else "476ceef2c0ffe02e0b637bbeed4d6805dbd1707a"
    with open(f"{day}.txt.gz", "wb") as fh:
        fh.write(pack(repo, day, commit))
