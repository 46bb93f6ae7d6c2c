"""The exit-code table has one home (vmtools.errors); the man pages and --help agree with it."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from vmtools import errors

MAN = ROOT / "man"


def codes_in(page: str) -> list[int]:
    text = (MAN / page).read_text(encoding="utf-8")
    m = re.search(r"^\.SH EXIT STATUS\n(.*?)(?=^\.SH )", text, re.S | re.M)
    return [int(c) for c in re.findall(r"^\.B (\d+)$", m.group(1), re.M)] if m else []


def test_vmtools_7_lists_exactly_the_table():
    assert codes_in("vmtools.7") == sorted(errors.EXIT_CODES)


@pytest.mark.parametrize("page", sorted(p.name for p in MAN.glob("vm-*.1")))
def test_every_command_page_uses_only_codes_of_the_table(page):
    assert set(codes_in(page)) <= set(errors.EXIT_CODES)


def test_every_error_class_exits_with_a_code_of_the_table():
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.VmtoolsError)]
    assert len(classes) >= 6
    assert {c.exit_code for c in classes} <= set(errors.EXIT_CODES)


def test_the_help_epilog_is_built_from_the_table():
    from vmtools.cli._common import EXIT_CODES_EPILOG
    for code, text in errors.EXIT_CODES_SHORT.items():
        assert f"{code} {text}" in EXIT_CODES_EPILOG
    assert set(errors.EXIT_CODES_SHORT) == set(errors.EXIT_CODES)
