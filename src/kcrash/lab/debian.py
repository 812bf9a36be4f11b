"""
kcrash.lab.debian
=================

Debian kernel packages for the crash lab: resolve the two supported bookworm amd64 kernels,
fetch their ``.deb`` files with ``apt-get download`` and unpack them (never install them) into
a cache directory keyed by package version. Covers the image, the headers needed to build the
lab module, and the few files of the ``-dbg`` package that oracle tests need. It does not boot
anything (see :mod:`kcrash.lab.qemu`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kcrash.errors import KernelPackageError, LabToolMissingError

__all__ = [
    "KERNEL_FLAVOURS",
    "KernelPackage",
    "fetch_debuginfo",
    "fetch_headers",
    "fetch_image",
    "kernel_dir",
    "parse_depends",
    "resolve_kernel",
]

# The supported kernels: "6.1" is pinned by package name; "6.12" follows the bookworm-security
# meta package to its newest ABI.
KERNEL_FLAVOURS: dict[str, str] = {
    "6.1": "linux-image-6.1.0-56-amd64",
    "6.12": "linux-image-6.12-amd64",
}

# Files of the -dbg package the lab uses besides the vmlinux (debug .ko of the modules it loads).
_DBG_MODULES = ("qemu_fw_cfg", "pvpanic", "pvpanic-mmio")


@dataclass(frozen=True, slots=True)
class KernelPackage:
    """One Debian kernel image package: ``name`` (``linux-image-RELEASE``), ``version``, ``release``."""

    flavour: str
    name: str
    version: str
    release: str

    @property
    def key(self) -> str:
        """Cache key: package name and version, safe as a directory name."""
        return f"{self.name}_{self.version}".replace(":", "%3a").replace("~", "_")


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise LabToolMissingError(cmd[0], {"apt-get": "apt", "apt-cache": "apt"}.get(cmd[0], cmd[0]))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise KernelPackageError(f"{' '.join(cmd[:3])} failed: {last}")
    return proc.stdout


def _apt_show(package: str) -> dict[str, str]:
    """Fields of the candidate version of ``package`` (``apt-cache show --no-all-versions``)."""
    try:
        text = _run(["apt-cache", "show", "--no-all-versions", package])
    except KernelPackageError:
        text = ""
    if not text.strip():
        raise KernelPackageError(
            f"package {package} is unknown to apt: run 'apt-get update' (bookworm and bookworm-security "
            "must be in the sources)")
    return _parse_fields(text)


def _parse_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
        if match:
            fields.setdefault(match.group(1), match.group(2))
    return fields


def parse_depends(depends: str) -> list[str]:
    """Package names of a Debian ``Depends`` field, first alternative of each clause."""
    names = []
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        name = first.split("(")[0].strip().split(":")[0]
        if name:
            names.append(name)
    return names


def resolve_kernel(flavour: str) -> KernelPackage:
    """Resolve a flavour (``6.1`` or ``6.12``) to its concrete image package, through apt."""
    if flavour not in KERNEL_FLAVOURS:
        raise KernelPackageError(f"unknown kernel {flavour!r}; supported: {', '.join(KERNEL_FLAVOURS)}")
    name = KERNEL_FLAVOURS[flavour]
    fields = _apt_show(name)
    if not re.search(r"\d+\.\d+\.\d+", name.removeprefix("linux-image-")):
        concrete = [d for d in parse_depends(fields.get("Depends", "")) if d.startswith("linux-image-")]
        if not concrete:
            raise KernelPackageError(f"{name} depends on no linux-image package")
        name = concrete[0]
        fields = _apt_show(name)
    return KernelPackage(flavour, name, fields["Version"], name.removeprefix("linux-image-"))


def kernel_dir(cache: Path, pkg: KernelPackage) -> Path:
    """Directory of one kernel package version in the cache."""
    return cache / "kernels" / pkg.key


def _download(cache: Path, package: str, version: str) -> Path:
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for old in debs.glob(f"{package}_*.deb"):
        return old
    _run(["apt-get", "download", "-q", f"{package}={version}"], cwd=debs)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise KernelPackageError(f"apt-get download {package} left no .deb file")
    return found[0]


def _extract(deb: Path, dest: Path, members: list[str] | None = None) -> None:
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if members is None:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
    else:
        script = 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "${@:3}"'
        _run(["bash", "-c", script, "extract", str(deb), str(tmp), *members])
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def fetch_image(cache: Path, pkg: KernelPackage) -> Path:
    """Unpack the image package; returns its root (``boot/vmlinuz-RELEASE``, ``lib/modules/...``)."""
    root = kernel_dir(cache, pkg) / "image"
    if not (root / "boot" / f"vmlinuz-{pkg.release}").exists():
        deb = _download(cache, pkg.name, pkg.version)
        _extract(deb, root)
        deb.unlink()
    return root


def fetch_headers(cache: Path, pkg: KernelPackage) -> Path:
    """Unpack ``linux-headers-RELEASE`` with its ``-common`` and ``linux-kbuild`` packages.

    Returns the headers directory to pass to ``make -C``; its top Makefile is rewritten to include
    the private ``-common`` copy instead of ``/usr/src``.
    """
    root = kernel_dir(cache, pkg) / "headers"
    build = root / "usr" / "src" / f"linux-headers-{pkg.release}"
    if not (build / "Makefile").exists():
        name = f"linux-headers-{pkg.release}"
        deps = parse_depends(_apt_show(name).get("Depends", ""))
        wanted = [name] + [d for d in deps if d.startswith(("linux-headers-", "linux-kbuild-"))]
        tmp = root.with_name("headers.part")
        shutil.rmtree(tmp, ignore_errors=True)
        for package in wanted:
            deb = _download(cache, package, _apt_show(package)["Version"])
            _run(["dpkg-deb", "-x", str(deb), str(tmp)])
            deb.unlink()
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        _privatize_makefile(build / "Makefile", root)
    return build


def _privatize_makefile(makefile: Path, root: Path) -> None:
    text = makefile.read_text()
    text = re.sub(r"^include (?:\S*)/usr/src/", f"include {root}/usr/src/", text, flags=re.M)
    makefile.write_text(text)


def fetch_debuginfo(cache: Path, pkg: KernelPackage) -> Path:
    """Extract the vmlinux (and the lab's module debug files) of the ``-dbg`` package.

    Returns the path of the debug vmlinux. Only these members are extracted; the ``.deb`` is
    deleted afterwards.
    """
    root = kernel_dir(cache, pkg) / "dbg"
    vmlinux = root / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{pkg.release}"
    if not vmlinux.exists():
        name = f"{pkg.name}-dbg"
        deb = _download(cache, name, _apt_show(name)["Version"])
        mods = f"./usr/lib/debug/lib/modules/{pkg.release}/kernel/drivers"
        members = [f"./usr/lib/debug/boot/vmlinux-{pkg.release}"]
        members += [f"{mods}/*/{m}.ko*" for m in _DBG_MODULES]  # GNU tar: '*' matches '/' here
        _extract(deb, root, members)
        deb.unlink()
    return vmlinux
