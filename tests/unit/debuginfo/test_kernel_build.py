"""kcrash.debuginfo.kernel_build: a vmlinux's build (build-id, linux_banner) against a dump's or a log's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kcrash.debuginfo.elf_symtab import open_elf_image
from kcrash.debuginfo.kernel_build import KernelBuild, check_kernel_build, kernel_build_mismatch_or_none
from kcrash.dumps.base import DumpWarning
from kcrash.errors import DebugInfoMismatchError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
BANNER = ("Linux version 6.12.118+deb12-amd64 (debian-kernel@lists.debian.org) (gcc-12) "
          "#1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1~deb12u1 (2026-11-28)")


def test_the_oops_header_words_and_a_stacktrace_build_id_are_compared(tmp_path: Path) -> None:
    (tmp_path / "v.c").write_text(f'const char linux_banner[] = "{BANNER}\\n";\n')
    subprocess.run(["gcc", "-c", "-o", "vmlinux", "v.c"], cwd=tmp_path, check=True)
    image = open_elf_image(tmp_path / "vmlinux")
    try:
        release = "6.12.118+deb12-amd64"
        # lib/dump_stack.c: "RELEASE #1", Debian's package version, CONFIG_STACKTRACE_BUILD_ID's id
        same = KernelBuild(release, "#1  Debian 6.12.118-1~deb12u1 " + "ab" * 20)
        assert kernel_build_mismatch_or_none(image, same) is None
        check_kernel_build(image, same)
        other = KernelBuild(release, "#1  Debian 6.12.117-1~deb12u1")
        reason = kernel_build_mismatch_or_none(image, other)
        assert reason is not None and "6.12.117-1~deb12u1" in reason and "(gcc-12)" not in reason
        with pytest.raises(DebugInfoMismatchError, match="--force"):
            check_kernel_build(image, other)
        with pytest.warns(DumpWarning, match=r"used anyway \(--force\)"):
            check_kernel_build(image, other, force=True)
        assert kernel_build_mismatch_or_none(image, KernelBuild()) is None  # nothing said, nothing compared
    finally:
        image.close()
