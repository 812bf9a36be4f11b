"""Pure parts of the Debian package handling (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.errors import KernelPackageError
from kcrash.lab import debian


def test_parse_depends_takes_first_alternative_and_drops_versions() -> None:
    field = ("linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), "
             "linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1) | linux-image-6.12.117+deb12-amd64-unsigned, "
             "linux-kbuild-6.12.117+deb12, gcc-12:amd64")
    assert debian.parse_depends(field) == [
        "linux-base", "linux-headers-6.12.117+deb12-common", "linux-image-6.12.117+deb12-amd64",
        "linux-kbuild-6.12.117+deb12", "gcc-12"]


def test_parse_depends_empty() -> None:
    assert debian.parse_depends("") == []


def test_package_key_is_a_safe_directory_name() -> None:
    pkg = debian.KernelPackage("6.12", "linux-image-6.12.117+deb12-amd64", "1:6.12.117-1~deb12u1",
                               "6.12.117+deb12-amd64")
    assert "/" not in pkg.key and "~" not in pkg.key and ":" not in pkg.key
    assert pkg.key.startswith("linux-image-6.12.117+deb12-amd64_")


def test_unknown_flavour_is_refused() -> None:
    with pytest.raises(KernelPackageError, match=r"supported: 6\.1, 6\.12"):
        debian.resolve_kernel("5.10")


def test_makefile_is_pointed_at_the_private_copy(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text("include /usr/src/linux-headers-6.1.0-56-common/Makefile\n")
    debian._privatize_makefile(makefile, tmp_path)
    assert makefile.read_text() == f"include {tmp_path}/usr/src/linux-headers-6.1.0-56-common/Makefile\n"
    debian._privatize_makefile(makefile, tmp_path / "moved")  # idempotent after a rename
    assert makefile.read_text() == f"include {tmp_path}/moved/usr/src/linux-headers-6.1.0-56-common/Makefile\n"
