"""Finding debug files: user paths, the Debian layout, build-id matching."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kcrash.debuginfo.finder import find_debuginfo, find_module_debuginfo, read_build_id_or_none
from kcrash.errors import CorruptDumpError, MissingDebugInfoError

RELEASE = "6.1.0-56-amd64"
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def elf(path: Path, build_id: str) -> Path:
    """A tiny ELF with the given GNU build-id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text("int f(void) { return 1; }\n")
    subprocess.run(["gcc", "-g", "-nostdlib", "-shared", f"-Wl,--build-id=0x{build_id}", "-o", str(path), str(src)],
                   check=True)
    return path


def test_debian_location_under_root_is_found_and_build_id_checked(tmp_path: Path) -> None:
    vmlinux = elf(tmp_path / "usr/lib/debug/boot" / f"vmlinux-{RELEASE}", "aa" * 20)
    assert read_build_id_or_none(vmlinux) == "aa" * 20
    assert find_debuginfo(RELEASE, "AA" * 20, root=tmp_path) == vmlinux
    with pytest.raises(MissingDebugInfoError, match=r"another build.*--force"):
        find_debuginfo(RELEASE, "bb" * 20, root=tmp_path)
    assert find_debuginfo(RELEASE, "bb" * 20, force=True, root=tmp_path) == vmlinux


def test_user_paths_come_first_and_directories_are_searched(tmp_path: Path) -> None:
    elf(tmp_path / "root/usr/lib/debug/boot" / f"vmlinux-{RELEASE}", "11" * 20)
    mine = elf(tmp_path / "mine" / "vmlinux", "22" * 20)
    assert find_debuginfo(RELEASE, None, [tmp_path / "mine"], root=tmp_path / "root") == mine
    assert find_debuginfo(RELEASE, "11" * 20, [mine], root=tmp_path / "root") != mine  # mismatch skipped


def test_nothing_found_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(MissingDebugInfoError, match=f"linux-image-{RELEASE}-dbg"):
        find_debuginfo(RELEASE, None, root=tmp_path)


def test_not_an_elf_file(tmp_path: Path) -> None:
    junk = tmp_path / "vmlinux"
    junk.write_bytes(b"\0" * 100)
    with pytest.raises(CorruptDumpError):
        read_build_id_or_none(junk)
    with pytest.raises(MissingDebugInfoError, match="not an ELF"):
        find_debuginfo(None, None, [junk], root=tmp_path)


def test_modules_by_name_dash_or_underscore(tmp_path: Path) -> None:
    ko = elf(tmp_path / "usr/lib/debug/lib/modules" / RELEASE / "kernel/drivers/firmware/qemu_fw_cfg.ko", "33" * 20)
    assert find_module_debuginfo("qemu-fw-cfg", RELEASE, root=tmp_path) == ko
    given = elf(tmp_path / "given" / "kcrash_test.ko", "44" * 20)
    assert find_module_debuginfo("kcrash_test", RELEASE, [given], root=tmp_path) == given
    assert find_module_debuginfo("absent", RELEASE, [given], root=tmp_path) is None
