"""Pure parts of the Debian package handling (no network)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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
    with pytest.raises(KernelPackageError, match=r"supported: 5\.10, 6\.1, 6\.12, 7"):
        debian.resolve_kernel("4.19")


def test_flavours_from_other_suites_pick_the_newest_abi_by_pattern() -> None:
    old, new = debian.KERNEL_FLAVOURS["5.10"], debian.KERNEL_FLAVOURS["7"]
    assert old.suites == ("bullseye-security",) and new.suites == ("sid",)
    assert old.newest and new.newest
    assert re.fullmatch(old.image, "linux-image-5.10.0-46-amd64")
    assert not re.fullmatch(old.image, "linux-image-5.10.0-46-cloud-amd64")
    assert not re.fullmatch(old.image, "linux-image-5.10.0-46-amd64-dbg")
    assert re.fullmatch(new.image, "linux-image-7.2.13+deb14-amd64")
    assert not re.fullmatch(new.image, "linux-image-7.2.13+deb14-rt-amd64")
    assert not re.fullmatch(new.image, "linux-image-6.17.8+deb14-amd64")
    assert not debian.KERNEL_FLAVOURS["6.1"].suites  # bookworm kernels come through the machine's apt


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg orders Debian versions")
def test_newest_matching_orders_by_debian_version(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {"linux-image-5.10.0-9-amd64": "5.10.70-1", "linux-image-5.10.0-46-amd64": "5.10.262-1",
                "linux-image-5.10.0-45-amd64": "5.10.251-1~deb11u1", "linux-image-5.10.0-46-rt-amd64": "9.9-1"}
    monkeypatch.setattr(debian, "_run", lambda cmd, cwd=None, apt=None: "\n".join(versions) + "\n")
    monkeypatch.setattr(debian, "_apt_show", lambda name, apt=None: {"Version": versions[name]})
    name, fields = debian._newest_matching(debian.KERNEL_FLAVOURS["5.10"].image, None)
    assert (name, fields["Version"]) == ("linux-image-5.10.0-46-amd64", "5.10.262-1")


def test_no_matching_package_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian, "_run", lambda cmd, cwd=None, apt=None: "linux-image-amd64\n")
    with pytest.raises(KernelPackageError, match="no package matching"):
        debian._newest_matching(debian.KERNEL_FLAVOURS["7"].image, None)


def _touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_image_layout_before_debian_13(tmp_path: Path) -> None:
    _touch(tmp_path / "boot" / "vmlinuz-5.10.0-46-amd64")
    _touch(tmp_path / "lib" / "modules" / "5.10.0-46-amd64" / "kernel" / "drivers" / "misc" / "pvpanic.ko")
    image = debian._probe_image(tmp_path, "5.10.0-46-amd64")
    assert image is not None
    assert image.vmlinuz == tmp_path / "boot" / "vmlinuz-5.10.0-46-amd64"
    assert image.modules_root == tmp_path / "lib" / "modules" / "5.10.0-46-amd64"


def test_image_layout_of_split_packages(tmp_path: Path) -> None:
    release = "7.2.13+deb14-amd64"
    modules = tmp_path / "usr" / "lib" / "modules" / release
    _touch(modules / "vmlinuz")
    _touch(modules / "kernel" / "drivers" / "misc" / "pvpanic" / "pvpanic-mmio.ko.xz")
    image = debian._probe_image(tmp_path, release)
    assert image is not None and image.vmlinuz == modules / "vmlinuz" and image.modules_root == modules


def test_image_layout_incomplete(tmp_path: Path) -> None:
    _touch(tmp_path / "usr" / "lib" / "modules" / "7.2.13+deb14-amd64" / "vmlinuz")  # meta package alone
    assert debian._probe_image(tmp_path, "7.2.13+deb14-amd64") is None
    assert debian._probe_image(tmp_path / "absent", "7.2.13+deb14-amd64") is None


def test_debug_vmlinux_in_boot(tmp_path: Path) -> None:
    _touch(tmp_path / "usr" / "lib" / "debug" / "boot" / "vmlinux-5.10.0-46-amd64")
    link = tmp_path / "usr" / "lib" / "debug" / "lib" / "modules" / "5.10.0-46-amd64" / "vmlinux"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../../boot/vmlinux-5.10.0-46-amd64")
    found = debian._probe_debuginfo(tmp_path, "5.10.0-46-amd64")
    assert found == tmp_path / "usr" / "lib" / "debug" / "boot" / "vmlinux-5.10.0-46-amd64"


def test_debug_vmlinux_absolute_boot_link_is_made_relative(tmp_path: Path) -> None:
    release = "7.2.13+deb14-amd64"
    real = tmp_path / "usr" / "lib" / "debug" / "lib" / "modules" / release / "vmlinux"
    _touch(real, b"ELF")
    link = tmp_path / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{release}"
    link.parent.mkdir(parents=True)
    link.symlink_to(f"/usr/lib/debug/lib/modules/{release}/vmlinux")
    debian._relative_boot_link(tmp_path, release)
    assert not os.readlink(link).startswith("/")
    assert link.resolve() == real.resolve()
    assert debian._probe_debuginfo(tmp_path, release) == link


def test_debug_vmlinux_missing(tmp_path: Path) -> None:
    assert debian._probe_debuginfo(tmp_path, "7.2.13+deb14-amd64") is None


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_members_a_package_lacks_are_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "pkg"
    _touch(tree / "DEBIAN" / "control", b"Package: t\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\n"
                                        b"Description: t\n")
    _touch(tree / "usr" / "lib" / "debug" / "boot" / "vmlinux-1", b"ELF")
    subprocess.run(["dpkg-deb", "-Zgzip", "-b", str(tree), str(tmp_path / "t.deb")], check=True,
                   capture_output=True)
    dest = tmp_path / "out"
    debian._extract([tmp_path / "t.deb"], dest, ["./usr/lib/debug/boot/vmlinux-1",
                                                 "./usr/lib/debug/lib/modules/1/vmlinux",
                                                 "./usr/lib/debug/lib/modules/1/kernel/drivers/*/pvpanic-mmio.ko*"])
    assert (dest / "usr" / "lib" / "debug" / "boot" / "vmlinux-1").read_bytes() == b"ELF"
    assert not (tmp_path / "out.part").exists()


def test_a_broken_package_is_still_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.deb").write_bytes(b"not a deb")
    with pytest.raises(KernelPackageError, match=r"unpacking bad\.deb failed"):
        debian._extract([tmp_path / "bad.deb"], tmp_path / "out", ["./x"])


def test_makefile_is_pointed_at_the_private_copy(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text("include /usr/src/linux-headers-6.1.0-56-common/Makefile\n")
    debian._privatize_makefile(makefile, tmp_path)
    assert makefile.read_text() == f"include {tmp_path}/usr/src/linux-headers-6.1.0-56-common/Makefile\n"
    debian._privatize_makefile(makefile, tmp_path / "moved")  # idempotent after a rename
    assert makefile.read_text() == f"include {tmp_path}/moved/usr/src/linux-headers-6.1.0-56-common/Makefile\n"


def test_makefile_kbuild_output_is_pointed_at_the_private_copy(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text("KBUILD_OUTPUT=/usr/src/linux-headers-7.2.13+deb14-amd64\n"
                        "include /usr/src/linux-headers-7.2.13+deb14-common/Makefile\n")
    debian._privatize_makefile(makefile, tmp_path)
    assert makefile.read_text() == (f"KBUILD_OUTPUT={tmp_path}/usr/src/linux-headers-7.2.13+deb14-amd64\n"
                                    f"include {tmp_path}/usr/src/linux-headers-7.2.13+deb14-common/Makefile\n")


def test_split_packages_get_the_installed_boot_name(tmp_path: Path) -> None:
    release = "7.2.13+deb14-amd64"
    modules = tmp_path / "usr" / "lib" / "modules" / release
    _touch(modules / "vmlinuz", b"bzImage")
    _touch(modules / "kernel" / "drivers" / "firmware" / "qemu_fw_cfg.ko.xz")
    image = debian._probe_image(tmp_path, release)
    assert image is not None
    debian._boot_link(image, release)
    again = debian._probe_image(tmp_path, release)
    assert again is not None and again.vmlinuz == tmp_path / "boot" / f"vmlinuz-{release}"
    assert again.vmlinuz.read_bytes() == b"bzImage" and not os.readlink(again.vmlinuz).startswith("/")
    debian._boot_link(again, release)  # idempotent


def test_every_flavour_without_the_test_module_says_why() -> None:
    assert not debian.KERNEL_FLAVOURS["7"].test_module
    for flavour in debian.KERNEL_FLAVOURS.values():
        assert flavour.test_module or flavour.why, flavour.name


def test_arm64_image_names_follow_the_amd64_ones() -> None:
    assert debian._image_name(debian.get_flavour("6.1"), "arm64") == "linux-image-6.1.0-56-arm64"
    assert debian._image_name(debian.get_flavour("6.12"), "arm64") == "linux-image-6.12-arm64"
    assert debian._image_name(debian.get_flavour("6.1"), "x86_64") == debian.get_flavour("6.1").image
    assert debian._image_name(debian.get_flavour("5.10"), "arm64").endswith(r"\d+-arm64")
    assert debian.debian_arch("x86_64") == "amd64" and debian.debian_arch("arm64") == "arm64"
    with pytest.raises(KernelPackageError, match="unknown architecture 'mips'"):
        debian.debian_arch("mips")


def test_foreign_packages_download_to_their_own_directory(tmp_path: Path) -> None:
    # linux-kbuild-6.1 of amd64 and of arm64 have the same name: they must not be mistaken for each other
    assert debian._debs_dir(tmp_path, "x86_64") == tmp_path / "debs"
    assert debian._debs_dir(tmp_path, "arm64") == tmp_path / "debs" / "arm64"


def test_the_machines_busybox_for_its_own_architecture(tmp_path: Path) -> None:
    assert debian.fetch_busybox(tmp_path, "x86_64") == Path("/bin/busybox")
    cached = tmp_path / "tools" / "arm64" / "busybox-static" / "bin" / "busybox"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF")
    assert debian.fetch_busybox(tmp_path, "arm64") == cached  # unpacked once, not fetched again
