"""The error hierarchy: one tree, exit codes only on CliError, pinned public names."""

from __future__ import annotations

import kcrash
from kcrash import errors


def test_every_error_derives_from_kcrash_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.KcrashError), name


def test_lookup_errors_are_lookup_errors() -> None:
    assert issubclass(errors.SymbolNotFoundError, LookupError)
    assert issubclass(errors.TypeLookupError, LookupError)


def test_corrupt_dump_error_names_the_offset() -> None:
    exc = errors.CorruptDumpError("bad bitmap", offset=0x1234, path="x.kdump")
    assert exc.offset == 0x1234
    assert str(exc) == "x.kdump: bad bitmap at file offset 0x1234"
    assert isinstance(exc, errors.DumpFormatError)


def test_fault_error_says_why() -> None:
    exc = errors.FaultError(0xFFFF888000001000, physical=False, reason="excluded by dump level 31")
    assert "0xffff888000001000" in str(exc)
    assert "excluded by dump level 31" in str(exc)


def test_tool_missing_names_the_package() -> None:
    exc = errors.LabToolMissingError("qemu-system-x86_64", "qemu-system-x86")
    assert "apt-get install qemu-system-x86" in str(exc)


def test_only_cli_error_has_an_exit_code() -> None:
    assert errors.CliError("x", exit_code=3).exit_code == 3
    carriers = [n for n in errors.__all__ if "exit_code" in vars(getattr(errors, n)).get("__init__", lambda: 0)
                .__code__.co_varnames]
    assert carriers == ["CliError"]


def test_public_api_is_pinned() -> None:
    assert sorted(kcrash.__all__) == sorted([
        "CorruptDumpError", "DumpFormatError", "FaultError", "KcrashError", "MissingDebugInfoError",
        "SymbolNotFoundError", "TypeLookupError", "__version__"])
