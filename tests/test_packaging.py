"""The install paths: the distribution's own name, the Domain-0 .deb (one file, pure Python, run
by Debian's python3 in isolated mode) and the management node's venv in /opt/vmtools, staged
under a temporary root. .ci/run also installs both for real (packaging/ci-install-check)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT
from vmtools import __version__

SYSTEM_PYTHON = "/usr/bin/python3"


def test_the_distribution_has_a_name_of_its_own():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "vmtools-xen"            # "vmtools" on PyPI is somebody else's
    assert project["version"] == __version__
    assert f'VERSION={__version__}' in (ROOT / "shell" / "vm-rebalance").read_text()


def test_units_and_init_script_point_at_installed_paths():
    for name in ("vm-gmetric.service", "vm-rebalance.service", "vm-gmetric.init"):
        text = (ROOT / "contrib" / name).read_text()
        assert "/usr/local/bin" not in text, name
    assert "ExecStart=/opt/vmtools/bin/vm-gmetric " in \
        (ROOT / "contrib" / "vm-gmetric.service").read_text()


def test_every_data_file_of_the_package_is_installed():
    """A file under vmtools/ that is not Python (an example dump, a scenario, a Prometheus
    profile, a page's script) is read at run time: package-data must ship it, or a `pip
    install .` (packaging/install-venv) lacks it while the editable checkout works. The
    Prometheus profiles were missing: vm-snapshot --prometheus failed on every real install."""
    import fnmatch
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["vmtools"]
    tracked = subprocess.run(["git", "ls-files", "vmtools"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    data = [p[len("vmtools/"):] for p in tracked if not p.endswith(".py")]
    assert data, "git lists no data file under vmtools/"
    unshipped = [p for p in data if not any(fnmatch.fnmatch(p, g) for g in globs)]
    assert not unshipped, f"pyproject.toml package-data does not ship {unshipped}"


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is missing")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([str(ROOT / "packaging" / "build-deb"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path == out / f"vmtools-gmetric_{__version__}_all.deb"
    return path


@pytest.mark.slow
def test_the_domain0_package_is_one_pure_python_file(deb, tmp_path):
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture", "Depends", "Package"],
                          capture_output=True, text=True, check=True).stdout
    assert "Architecture: all" in info and "Depends: python3 (>= 3.11)" in info
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    assert ".so" not in {Path(line.split()[-1]).suffix for line in listing.splitlines()}
    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True,
                               text=True, check=True).stdout.split()
    assert conffiles == ["/etc/default/vm-gmetric", "/etc/init.d/vm-gmetric"]
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    unit = (root / "lib/systemd/system/vm-gmetric.service").read_text()
    assert "ExecStart=/usr/bin/vm-gmetric " in unit
    launcher = root / "usr/bin/vm-gmetric"
    assert launcher.read_text().startswith(f"#!{SYSTEM_PYTHON} -IS\n")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="needs Debian's python3")
def test_the_packaged_vm_gmetric_runs_on_debians_python_alone(deb, tmp_path):
    """Debian's python3, isolated (-I -S: no site-packages, not this venv): what the package
    bundles is all it needs, and its dry run reads a (stand-in) toolstack."""
    from vmtools.lab.cluster import ClusterState, new_state
    from vmtools.lab.standin import install_standins
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    launcher = [SYSTEM_PYTHON, "-IS", str(root / "usr/bin/vm-gmetric")]
    env = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path / "none")}
    proc = subprocess.run([*launcher, "--version"], capture_output=True, text=True, env=env)
    assert (proc.returncode, proc.stdout) == (0, f"vm-gmetric {__version__}\n"), proc.stderr

    state = tmp_path / "cluster.json"
    ClusterState(state).write(new_state({"node-1": {"domains": {"web1": {}}}}))
    bin_dir = install_standins(tmp_path / "bin")
    (tmp_path / "sysfs").mkdir()
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", VMTOOLS_LAB_STATE=str(state),
               VMTOOLS_LAB_HOST="node-1", VMTOOLS_LAB_SYSFS=str(tmp_path / "sysfs"))
    proc = subprocess.run([*launcher, "--dry-run", "--window", "0", "--gmond", "127.0.0.1:9",
                           "--sysfs-root", str(tmp_path / "sysfs")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {m["name"] for m in json.loads(proc.stdout)["metrics"]}
    assert {"container.mem_total", "container.vm.web1.mem"} <= names


@pytest.mark.slow
def test_the_management_node_install_stages_a_venv_in_opt(tmp_path):
    stage = tmp_path / "root"
    proc = subprocess.run([str(ROOT / "packaging" / "install-venv"), "--root", str(stage)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    venv = stage / "opt/vmtools"
    for name in ("vm-snapshot", "vm-plan", "vm-apply", "vm-gmetric", "vm-lab", "vm-rebalance"):
        link = stage / "usr/local/bin" / name
        assert os.readlink(link) == f"/opt/vmtools/bin/{name}"
        assert (venv / "bin" / name).exists()
        assert (stage / "usr/local/share/bash-completion/completions" / name).is_symlink()
    assert os.readlink(stage / "usr/local/share/man/man1/vm-plan.1") == \
        "/opt/vmtools/share/man/man1/vm-plan.1"
    unit = (stage / "etc/systemd/system/vm-rebalance.service").read_text()
    assert "ExecStart=/opt/vmtools/bin/vm-rebalance " in unit
    assert (stage / "etc/vmtools/rebalance.conf").exists()
    assert (stage / "etc/vmtools/vmtools.toml.example").exists()
    snap = subprocess.run([str(venv / "bin/vm-snapshot"), "--example", "lab"],
                          capture_output=True, timeout=120, cwd=tmp_path)
    plan = subprocess.run([str(venv / "bin/vm-plan"), "-f", "table"], input=snap.stdout,
                          capture_output=True, timeout=300, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert b"migrations" in plan.stdout
    # The suggested next step: edit rebalance.conf (here: its gmetad becomes the bundled
    # dump, its archive a scratch directory), then 'vm-rebalance -n'. Every file the installed
    # settings name exists, and vm-plan's state is where vm-status looks for it.
    conf = (stage / "etc/vmtools/rebalance.conf").read_text()
    for path in {w for w in conf.split() if w.startswith("/etc/vmtools/")
                 and not w.startswith("/etc/vmtools/rebalance.conf")}:
        line = next(x for x in conf.splitlines() if path in x)
        assert line.lstrip().startswith("#") or (stage / path.lstrip("/")).exists(), line
    archive = tmp_path / "runs"
    edited = tmp_path / "rebalance.conf"
    edited.write_text(conf.replace('SNAPSHOT_ARGS="--gmetad ganglia.example.org:8651"',
                                   'SNAPSHOT_ARGS="--example hotspot"')
                      .replace("ARCHIVE=/var/lib/vmtools/runs", f"ARCHIVE={archive}")
                      # the dump's hosts do not exist: the dry run asks none of them
                      .replace('APPLY_ARGS="', 'APPLY_ARGS="--offline '))
    run = subprocess.run([str(venv / "bin/vm-rebalance"), "-n", "-c", str(edited)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (archive / ".plan-state").is_dir() and any((archive / ".plan-state").iterdir())
    status = subprocess.run([str(venv / "bin/vm-status"), "--runs", str(archive),
                             str(next(archive.glob("2*/snapshot.json")))],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "Last vm-rebalance run" in status.stdout
