"""Finding debug files: user paths, the Debian layout, build-id matching."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kcrash.debuginfo.elf_symtab import open_elf_image
from kcrash.debuginfo.finder import find_debuginfo, find_module_debuginfo, read_build_id_or_none
from kcrash.debuginfo.kernel_build import KernelBuild, kernel_build_mismatch_or_none, linux_banner_or_none
from kcrash.dumps.base import DumpWarning
from kcrash.errors import CorruptDumpError, DebugInfoMismatchError, MissingDebugInfoError

RELEASE = "6.1.0-56-amd64"
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def elf(path: Path, build_id: str, banner: str = "") -> Path:
    """A tiny ELF with the given GNU build-id (and ``linux_banner``, as init/version.c defines it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    data = f'const char linux_banner[] = "{banner}\\n";\n' if banner else ""
    src.write_text("int f(void) { return 1; }\n" + data)
    subprocess.run(["gcc", "-g", "-nostdlib", "-shared", f"-Wl,--build-id=0x{build_id}", "-o", str(path), str(src)],
                   check=True)
    return path


def test_debian_location_under_root_is_found_and_build_id_checked(tmp_path: Path) -> None:
    vmlinux = elf(tmp_path / "usr/lib/debug/boot" / f"vmlinux-{RELEASE}", "aa" * 20)
    assert read_build_id_or_none(vmlinux) == "aa" * 20
    assert find_debuginfo(RELEASE, "AA" * 20, root=tmp_path) == vmlinux
    with pytest.raises(DebugInfoMismatchError, match=r"another kernel build \(build-id a+, the kernel's is b+\)"):
        find_debuginfo(RELEASE, "bb" * 20, root=tmp_path)
    with pytest.warns(DumpWarning, match="another kernel build.*used anyway"):
        assert find_debuginfo(RELEASE, "bb" * 20, force=True, root=tmp_path) == vmlinux


BANNER = (f"Linux version {RELEASE} (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0) "
          "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-30)")
OLDER = BANNER.replace("6.1.192-2 (2026-11-30)", "6.1.191-1 (2026-10-02)")


def test_a_log_of_another_build_of_the_same_release_is_refused_by_the_banner(tmp_path: Path) -> None:
    vmlinux = elf(tmp_path / "vmlinux", "aa" * 20, BANNER)
    assert find_debuginfo(RELEASE, None, [vmlinux], build=KernelBuild(banner=BANNER)) == vmlinux
    same = KernelBuild(RELEASE, "#1  Debian 6.1.192-2")  # the oops header's words
    assert find_debuginfo(RELEASE, None, [vmlinux], build=same) == vmlinux
    for other in (KernelBuild(banner=OLDER), KernelBuild(RELEASE, "#1  Debian 6.1.191-1")):
        with pytest.raises(MissingDebugInfoError, match="another kernel build") as caught:
            find_debuginfo(RELEASE, None, [vmlinux], build=other, root=tmp_path)
        assert "6.1.191-1" in str(caught.value) and "\n" not in str(caught.value)
        with pytest.warns(DumpWarning, match="6.1.191-1.*used anyway"):
            assert find_debuginfo(RELEASE, None, [vmlinux], True, build=other) == vmlinux


def test_without_a_build_id_the_release_of_the_banner_is_compared(tmp_path: Path) -> None:
    vmlinux = elf(tmp_path / "vmlinux", "aa" * 20, BANNER)
    with pytest.raises(MissingDebugInfoError, match=r"the kernel is 5\.10\.0-46-amd64"):
        find_debuginfo("5.10.0-46-amd64", None, [vmlinux], root=tmp_path)
    image = open_elf_image(vmlinux)
    try:
        assert linux_banner_or_none(image) == BANNER
        assert kernel_build_mismatch_or_none(image, KernelBuild(RELEASE, build_id="aa" * 20)) is None
    finally:
        image.close()


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
