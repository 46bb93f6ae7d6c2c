"""A small budget of bench/fuzz.py in CI: generated hostile input through every installed
command; none may exit 70, print a traceback, print on stdout when it fails, or hang."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("fuzz_bench", ROOT / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


@pytest.mark.slow          # a budget of runs through the installed commands
def test_a_small_fuzz_budget_finds_nothing(tmp_path, capsys):
    rc = fuzz.main(["--runs", "24", "--seed", "1000", "--jobs", "2", "--keep", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert "24 runs" in out.out and "0 failing" in out.out


def test_the_judge_catches_what_it_must():
    assert fuzz.judge(70, b"", b"vm-plan: error: internal error") == "exit 70"
    assert fuzz.judge(65, b"{", b"vm-plan: error: x") == "exit 65 with output on stdout"
    assert fuzz.judge(None, b"", b"") == "hang (timeout)"
    assert fuzz.judge(1, b"", b"Traceback (most recent call last):") == "traceback"
    assert fuzz.judge(65, b"", b"vm-plan: error: x\nvm-plan: error: y") is not None
    assert fuzz.judge(0, b"{}", b"") is None
    assert fuzz.judge(1, b"", b"vm-apply: a: \x1b[2J refused") is not None
    assert fuzz.judge(0, b"", b"vm-apply: a: \\x1b[2J refused") is None
    assert fuzz.judge(1, b"", b"MemoryError") is not None
