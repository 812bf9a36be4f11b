"""``kcrash lab`` argument handling and faults, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.cli import main


def test_unknown_kind_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "crash", "MELTDOWN", "-o", str(tmp_path)]) == 2
    assert "MELTDOWN" in capsys.readouterr().err


def test_no_qemu_gives_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tool at all
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))
    assert main(["lab", "crash", "BUG", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("kcrash: error: qemu-system-x86_64 not found: install it with "
                   "'apt-get install qemu-system-x86'")
    assert not (tmp_path / "cache").exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert "kcrash, version" in capsys.readouterr().out


def test_timeout_shows_the_console_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from kcrash.cli import lab as cli_lab
    from kcrash.errors import LabTimeoutError

    def never_panics(*args: object, **kwargs: object) -> None:
        raise LabTimeoutError("no GUEST_PANICKED from the guest within 5 s", "[ 1.0] booting\n[ 2.0] idle")

    monkeypatch.setattr(cli_lab, "require_tools", lambda boot, arch="x86_64": None)
    monkeypatch.setattr(cli_lab, "run_crash", never_panics)
    assert main(["lab", "crash", "BUG", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "kcrash: error: no GUEST_PANICKED from the guest within 5 s"
    assert err[-2:] == ["  | [ 1.0] booting", "  | [ 2.0] idle"]


def test_arm64_without_its_qemu_gives_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))
    assert main(["lab", "crash", "BUG", "--arch", "arm64", "-o", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == ("kcrash: error: qemu-system-aarch64 not found: install it with "
                                               "'apt-get install qemu-system-arm'")


def test_a_kind_arm64_cannot_do_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from kcrash.cli import lab as cli_lab
    from kcrash.lab import crash as lab_crash
    from kcrash.lab.debian import KernelPackage
    from kcrash.lab.prepare import PreparedKernel

    pkg = KernelPackage("6.12", "linux-image-6.12.1-arm64", "1", "6.12.1-arm64", arch="arm64")
    prepared = PreparedKernel(pkg, tmp_path, tmp_path, None, tmp_path / "initrd.cpio.gz")
    monkeypatch.setattr(cli_lab, "require_tools", lambda boot, arch="x86_64": None)
    monkeypatch.setattr(lab_crash, "prepare_kernel", lambda cache, kernel, arch: prepared)
    assert main(["lab", "crash", "DIVZERO", "--arch", "arm64", "--kernel", "6.12", "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kcrash: error: DIVZERO does not work on arm64: ")
