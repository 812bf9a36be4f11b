"""The newc writer, checked with cpio(1) as the oracle."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from kcrash.errors import LabError
from kcrash.lab import initramfs
from kcrash.lab.initramfs import _entries, newc_archive


def test_archive_is_4_byte_aligned_and_ends_with_trailer() -> None:
    data = newc_archive(_entries({"init": b"#!/bin/sh\n", "a/odd": b"12345"}))
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert b"TRAILER!!!\0" in data[-128:]


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio(1) is the oracle")
def test_cpio_lists_what_we_wrote() -> None:
    files = {"init": b"#!/bin/busybox sh\necho hi\n", "bin/busybox": b"\x7fELF" + bytes(1000),
             "modules/x.ko": b"ko" * 3}
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=newc_archive(_entries(files)),
                             capture_output=True, check=True).stdout.decode()
    lines = {line.split()[-1]: line for line in listing.splitlines()}
    for name in files:
        assert name in lines
    assert lines["dev/console"].startswith("crw-------")
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["modules/x.ko"].startswith("-rw-r--r--")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio(1) is the oracle")
def test_cpio_extracts_identical_contents(tmp_path: Path) -> None:
    files = {"init": b"abc", "bin/busybox": bytes(range(256)) * 7}
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], cwd=tmp_path,
                   input=newc_archive([e for e in _entries(files) if not stat.S_ISCHR(e.mode)]), check=True)
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data


def test_init_script_handles_every_non_module_kind() -> None:
    script = initramfs.init_script().decode()
    for kind in ("SYSRQ", "INITEXIT", "OOM", "NMI", "none"):
        assert f"    {kind})" in script


def test_find_module_finds_compressed_modules(tmp_path: Path) -> None:
    (tmp_path / "kernel" / "drivers").mkdir(parents=True)
    (tmp_path / "kernel" / "drivers" / "pvpanic.ko.xz").write_bytes(b"x")
    assert initramfs.find_module(tmp_path, "pvpanic").name == "pvpanic.ko.xz"


@pytest.mark.parametrize(("suffix", "compress"), [
    (".ko", lambda b: b), (".ko.xz", lzma.compress), (".ko.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
    (".ko.gz", gzip.compress)])
def test_modules_are_unpacked_from_any_compression(tmp_path: Path, suffix: str,
                                                   compress: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "kernel" / "drivers" / "misc" / f"pvpanic{suffix}"
    path.parent.mkdir(parents=True)
    path.write_bytes(compress(b"\x7fELF module"))
    found = initramfs.find_module(tmp_path, "pvpanic")
    assert found == path
    assert initramfs._module_bytes(found) == b"\x7fELF module"


def _modules(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / "kernel" / "drivers" / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF " + name.encode())


def test_a_kernel_before_the_pvpanic_split_needs_no_pvpanic_mmio(tmp_path: Path) -> None:
    _modules(tmp_path, ["qemu_fw_cfg", "pvpanic"])
    files = initramfs._contents(tmp_path, None)
    assert {"modules/qemu_fw_cfg.ko", "modules/pvpanic.ko"} <= set(files)
    assert "modules/pvpanic-mmio.ko" not in files


def test_without_a_test_module_the_guest_gets_none(tmp_path: Path) -> None:
    _modules(tmp_path, ["qemu_fw_cfg", "pvpanic", "pvpanic-mmio"])
    assert "modules/kcrash_test.ko" not in initramfs._contents(tmp_path, None)
    (tmp_path / "t.ko").write_bytes(b"\x7fELF test")
    assert initramfs._contents(tmp_path, tmp_path / "t.ko")["modules/kcrash_test.ko"] == b"\x7fELF test"


def test_a_missing_required_module_is_an_error(tmp_path: Path) -> None:
    _modules(tmp_path, ["qemu_fw_cfg", "pvpanic-mmio"])
    with pytest.raises(LabError, match="module pvpanic not found"):
        initramfs._contents(tmp_path, None)


def test_cached_archive_names_by_content_and_packs_once(tmp_path: Path) -> None:
    # The name is the first 16 hex digits of sha256 over (name NUL sha256(data)) in name order: the
    # scheme both the crash and the kdump initramfs had, so the crashes cached on them stay valid.
    files = {"init": b"#!/bin/sh\n", "modules/order": b"virtio\n"}
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    out = initramfs.cached_archive(tmp_path, files, prefix="kdump-")
    assert out == tmp_path / "initramfs" / f"kdump-{digest.hexdigest()[:16]}.cpio.gz"
    assert gzip.decompress(out.read_bytes()) == newc_archive(_entries(files))
    out.write_bytes(b"kept")
    assert initramfs.cached_archive(tmp_path, files, prefix="kdump-") == out and out.read_bytes() == b"kept"
    assert initramfs.cached_archive(tmp_path, files).name == f"{digest.hexdigest()[:16]}.cpio.gz"


def test_a_foreign_guest_gets_its_busybox_and_only_the_modules_asked_for(tmp_path: Path) -> None:
    _modules(tmp_path, ["qemu_fw_cfg"])  # Debian's arm64 kernels have no pvpanic
    busybox = tmp_path / "arm64-busybox"
    busybox.write_bytes(b"\x7fELF arm64 busybox")
    files = initramfs._contents(tmp_path, None, busybox, ("qemu_fw_cfg",))
    assert files["bin/busybox"] == b"\x7fELF arm64 busybox"
    assert sorted(n for n in files if n.startswith("modules/")) == ["modules/qemu_fw_cfg.ko"]
    assert files["init"] == initramfs.init_script()
