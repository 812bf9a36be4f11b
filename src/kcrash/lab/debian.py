"""
kcrash.lab.debian
=================

Debian kernel packages for the crash lab: resolve a lab flavour (a kernel line: 5.10, 6.1, 6.12, 7)
to its amd64 image package, fetch the ``.deb`` files with ``apt-get download`` and unpack them (never
install them) into a cache directory keyed by package version. Kernels of bookworm come through the
machine's own apt; other suites (bullseye-security, sid) through a private apt configuration under
the cache (:mod:`kcrash.lab.apt`). Covers the image (one package, or since Debian 13 a meta package
whose kernel is in ``linux-binary-RELEASE`` and modules in ``linux-modules-RELEASE``), the headers
needed to build the lab module, and the few files of the ``-dbg`` package that oracle tests need.
Where each file lives is found by probing the unpacked tree, not from the version. It does not boot
anything (see :mod:`kcrash.lab.qemu`).

Besides the machine's own architecture (``x86_64``: Debian's amd64), the lab boots Debian's
``arm64`` kernels: the same flavours with the ``-arm64`` image packages, fetched through a private
apt configuration for the arm64 architecture (the machine's suites, or the flavour's), together with
a static arm64 busybox for the guest. The headers' kbuild host programs must run on the machine, so
the ``linux-kbuild`` package of an arm64 kernel comes from the machine's architecture.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kcrash.errors import KernelPackageError, LabToolMissingError
from kcrash.lab.apt import PrivateApt, machine_suites, private_apt
from kcrash.lab.arches import HOST_ARCH, LAB_ARCHES

__all__ = [
    "ARCHES",
    "KERNEL_FLAVOURS",
    "Flavour",
    "KernelImage",
    "KernelPackage",
    "cached_debuginfo",
    "cached_image",
    "debian_arch",
    "fetch_busybox",
    "fetch_debuginfo",
    "fetch_headers",
    "fetch_image",
    "get_flavour",
    "kernel_dir",
    "parse_depends",
    "resolve_kernel",
]


@dataclass(frozen=True, slots=True)
class Flavour:
    """One kernel line the lab boots.

    ``image`` names the image package: a concrete ``linux-image-RELEASE``, a meta package followed to
    the concrete one it depends on, or (``newest``) a regular expression whose newest matching package
    is taken. ``suites`` are fetched through a private apt configuration (empty: the machine's apt).
    ``test_module`` False means the lab's test module cannot be built for this kernel on this machine
    (``why`` says why), so only the crash kinds that need no module run there.
    """

    name: str
    image: str
    suites: tuple[str, ...] = ()
    newest: bool = False
    test_module: bool = True
    why: str = ""


# The supported kernels. "6.1" is pinned by package name; "6.12" follows the bookworm-security meta
# package to its newest ABI; "5.10" (Debian 11) and "7" (unstable) take the newest matching ABI.
KERNEL_FLAVOURS: dict[str, Flavour] = {f.name: f for f in (
    Flavour("5.10", r"linux-image-5\.10\.0-\d+-amd64", ("bullseye-security",), newest=True),
    Flavour("6.1", "linux-image-6.1.0-56-amd64"),
    Flavour("6.12", "linux-image-6.12-amd64"),
    # No test module for unstable's kernel on a bookworm host: its headers pass gcc-16 flags
    # (-fmin-function-alignment) gcc-12 rejects, and its kbuild's objtool and resolve_btfids need
    # glibc 2.38 (bookworm: 2.36), so kbuild cannot finish a module.
    Flavour("7", r"linux-image-7\.\d+\.\d+\+deb\d+-amd64", ("sid",), newest=True, test_module=False,
            why="its kbuild needs gcc-16 and glibc 2.38; bookworm has gcc-12 and glibc 2.36"),
)}

#: the lab's architectures (kcrash's names) and Debian's name of each (:mod:`kcrash.lab.arches`)
ARCHES: dict[str, str] = {a.name: a.debian for a in LAB_ARCHES.values()}
# A flavour's image package names (and patterns) name the amd64 build.
_AMD64_SUFFIX = "-amd64"

# Files of the -dbg package the lab uses besides the vmlinux (debug .ko of the modules it loads).
_DBG_MODULES = ("qemu_fw_cfg", "pvpanic", "pvpanic-mmio")
# Where the kcrash cache is when a caller names none (the CLI's default).
_DEFAULT_CACHE = Path.home() / ".cache" / "kcrash"


@dataclass(frozen=True, slots=True)
class KernelPackage:
    """One Debian kernel image package: ``name`` (``linux-image-RELEASE``), ``version``, ``release``;
    ``suites`` the private suites it comes from (empty: the machine's apt)."""

    flavour: str
    name: str
    version: str
    release: str
    suites: tuple[str, ...] = ()
    #: the lab architecture (a key of :data:`ARCHES`)
    arch: str = "x86_64"

    @property
    def key(self) -> str:
        """Cache key: package name and version, safe as a directory name."""
        return f"{self.name}_{self.version}".replace(":", "%3a").replace("~", "_")


@dataclass(frozen=True, slots=True)
class KernelImage:
    """An unpacked kernel: the tree's ``root``, the bootable ``vmlinuz`` and ``modules_root``
    (the ``lib/modules/RELEASE`` directory, under ``usr/`` since Debian 13)."""

    root: Path
    vmlinuz: Path
    modules_root: Path


def get_flavour(name: str) -> Flavour:
    """The flavour called ``name``; raises :class:`KernelPackageError` for an unknown one."""
    if name not in KERNEL_FLAVOURS:
        raise KernelPackageError(f"unknown kernel {name!r}; supported: {', '.join(KERNEL_FLAVOURS)}")
    return KERNEL_FLAVOURS[name]


def debian_arch(arch: str) -> str:
    """Debian's name of a lab architecture (``x86_64`` -> ``amd64``); unknown ones raise."""
    if arch not in ARCHES:
        raise KernelPackageError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHES)}")
    return ARCHES[arch]


def _image_name(spec: Flavour, arch: str) -> str:
    """The flavour's image package name (or pattern) for ``arch``."""
    wanted = "-" + debian_arch(arch)
    return spec.image if wanted == _AMD64_SUFFIX else spec.image.removesuffix(_AMD64_SUFFIX) + wanted


def _run(cmd: list[str], cwd: Path | None = None, apt: PrivateApt | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise LabToolMissingError(cmd[0], {"apt-get": "apt", "apt-cache": "apt"}.get(cmd[0], cmd[0]))
    env = apt.env() if apt is not None else None
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise KernelPackageError(f"{' '.join(cmd[:3])} failed: {last}")
    return proc.stdout


def _apt_show(package: str, apt: PrivateApt | None = None) -> dict[str, str]:
    """Fields of the candidate version of ``package`` (``apt-cache show --no-all-versions``)."""
    try:
        text = _run(["apt-cache", "show", "--no-all-versions", package], apt=apt)
    except KernelPackageError:
        text = ""
    if not text.strip():
        where = " ".join(apt.suites) if apt is not None else "bookworm and bookworm-security"
        hint = "" if apt is not None else ": run 'apt-get update' (they must be in the sources)"
        raise KernelPackageError(f"package {package} is unknown to apt ({where}){hint}")
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


def _apt_for(cache: Path | None, suites: tuple[str, ...], arch: str = "x86_64") -> PrivateApt | None:
    if arch != HOST_ARCH:
        # a foreign architecture: always a private configuration, of the machine's suites by default
        return private_apt(cache or _DEFAULT_CACHE, suites or machine_suites(), arch=debian_arch(arch))
    return private_apt(cache or _DEFAULT_CACHE, suites) if suites else None


def _newer(a: str, b: str) -> bool:
    # Debian version order, as dpkg defines it.
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0


def _newest_matching(pattern: str, apt: PrivateApt | None) -> tuple[str, dict[str, str]]:
    prefix = re.match(r"[A-Za-z0-9-]*", pattern)
    names = _run(["apt-cache", "pkgnames", prefix.group(0) if prefix else ""], apt=apt).split()
    best: tuple[str, dict[str, str]] | None = None
    for name in sorted(n for n in names if re.fullmatch(pattern, n)):
        fields = _apt_show(name, apt)
        if best is None or _newer(fields["Version"], best[1]["Version"]):
            best = (name, fields)
    if best is None:
        raise KernelPackageError(f"no package matching {pattern} in the archive")
    return best


def resolve_kernel(flavour: str, cache: Path | None = None, arch: str = "x86_64") -> KernelPackage:
    """Resolve a flavour (``5.10``, ``6.1``, ``6.12``, ``7``) to its concrete image package, through apt.

    ``cache`` is the kcrash cache, where flavours from other suites (and other architectures) keep
    their private apt configuration (None: ``~/.cache/kcrash``).
    """
    spec = get_flavour(flavour)
    apt = _apt_for(cache, spec.suites, arch)
    image = _image_name(spec, arch)
    if spec.newest:
        name, fields = _newest_matching(image, apt)
    else:
        name, fields = image, _apt_show(image, apt)
    if not re.search(r"\d+\.\d+\.\d+", name.removeprefix("linux-image-")):
        concrete = [d for d in parse_depends(fields.get("Depends", "")) if d.startswith("linux-image-")]
        if not concrete:
            raise KernelPackageError(f"{name} depends on no linux-image package")
        name = concrete[0]
        fields = _apt_show(name, apt)
    return KernelPackage(flavour, name, fields["Version"], name.removeprefix("linux-image-"), spec.suites, arch)


def kernel_dir(cache: Path, pkg: KernelPackage) -> Path:
    """Directory of one kernel package version in the cache."""
    return cache / "kernels" / pkg.key


def _debs_dir(cache: Path, arch: str) -> Path:
    # Packages of another architecture can have the same file name prefix (linux-kbuild-6.1_*).
    return cache / "debs" if arch == HOST_ARCH else cache / "debs" / debian_arch(arch)


def _download(cache: Path, package: str, version: str, apt: PrivateApt | None, arch: str = "x86_64") -> Path:
    debs = _debs_dir(cache, arch)
    debs.mkdir(parents=True, exist_ok=True)
    for old in debs.glob(f"{package}_*.deb"):
        return old
    _run(["apt-get", "download", "-q", f"{package}={version}"], cwd=debs, apt=apt)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise KernelPackageError(f"apt-get download {package} left no .deb file")
    return found[0]


def _fetch_debs(cache: Path, packages: list[str], apt: PrivateApt | None, arch: str = "x86_64") -> list[Path]:
    return [_download(cache, name, _apt_show(name, apt)["Version"], apt, arch) for name in packages]


# tar's complaints about members a package does not have (the caller probes what arrived).
_MISSING_MEMBER = re.compile(r"Not found in archive|Exiting with failure status due to previous errors")


def _untar_members(deb: Path, dest: Path, members: list[str]) -> None:
    # GNU tar with --wildcards: '*' matches '/' too.
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as deb_proc:
        tar = subprocess.run(["tar", "-x", "-C", str(dest), "--wildcards", *members], stdin=deb_proc.stdout,
                             capture_output=True, text=True, check=False)
        deb_err = deb_proc.stderr.read().decode(errors="replace") if deb_proc.stderr else ""
    complaints = [line for line in tar.stderr.splitlines() if not _MISSING_MEMBER.search(line)]
    if deb_proc.returncode != 0 or tar.returncode not in (0, 2) or complaints:
        last = (complaints or deb_err.strip().splitlines() or ["(no output)"])[-1]
        raise KernelPackageError(f"unpacking {deb.name} failed: {last}")


def _extract(debs: list[Path], dest: Path, members: list[str] | None = None) -> None:
    """Unpack ``debs`` (all of them, or the ``members`` each has) into ``dest``, atomically."""
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        if members is None:
            _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        else:
            _untar_members(deb, tmp, members)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _first_file(root: Path, candidates: list[str]) -> Path | None:
    for rel in candidates:
        if (root / rel).is_file():
            return root / rel
    return None


def _probe_image(root: Path, release: str) -> KernelImage | None:
    vmlinuz = _first_file(root, [f"boot/vmlinuz-{release}", f"usr/lib/modules/{release}/vmlinuz",
                                 f"lib/modules/{release}/vmlinuz"])
    modules = [root / d / release for d in ("lib/modules", "usr/lib/modules")
               if (root / d / release / "kernel").is_dir()]
    if vmlinuz is None or not modules:
        return None
    return KernelImage(root, vmlinuz, modules[0])


def cached_image(cache: Path, pkg: KernelPackage) -> KernelImage | None:
    """The unpacked kernel of ``pkg`` if it is in the cache, else None (nothing is fetched)."""
    return _probe_image(kernel_dir(cache, pkg) / "image", pkg.release)


def fetch_image(cache: Path, pkg: KernelPackage) -> KernelImage:
    """Unpack the image package together with the packages it depends on that carry the same
    release in their name (Debian 13+: ``linux-binary-``, ``linux-modules-``, ``linux-base-RELEASE``)."""
    found = cached_image(cache, pkg)
    if found is not None:
        return found
    apt = _apt_for(cache, pkg.suites, pkg.arch)
    fields = _apt_show(pkg.name, apt)
    parts = [d for d in parse_depends(fields.get("Depends", "")) if pkg.release in d]
    debs = [_download(cache, pkg.name, pkg.version, apt, pkg.arch), *_fetch_debs(cache, parts, apt, pkg.arch)]
    root = kernel_dir(cache, pkg) / "image"
    _extract(debs, root)
    found = _probe_image(root, pkg.release)
    if found is None:
        raise KernelPackageError(f"no vmlinuz-{pkg.release} and modules in {', '.join(d.name for d in debs)}")
    _boot_link(found, pkg.release)
    for deb in debs:
        deb.unlink()
    return _probe_image(root, pkg.release) or found


def _boot_link(image: KernelImage, release: str) -> None:
    # An installed kernel is /boot/vmlinuz-RELEASE in every packaging (Debian 13+ links it there at
    # install time); give the unpacked tree the same name for whoever looks there.
    link = image.root / "boot" / f"vmlinuz-{release}"
    if image.vmlinuz != link and not link.exists():
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(os.path.relpath(image.vmlinuz, link.parent))


def fetch_headers(cache: Path, pkg: KernelPackage) -> Path:
    """Unpack ``linux-headers-RELEASE`` with its ``-common`` and ``linux-kbuild`` packages.

    Returns the headers directory to pass to ``make -C``; its top Makefile is rewritten to name the
    private copies instead of ``/usr/src`` (checked on every call: the cache may have moved).
    """
    root = kernel_dir(cache, pkg) / "headers"
    build = root / "usr" / "src" / f"linux-headers-{pkg.release}"
    if not (build / "Makefile").exists():
        apt = _apt_for(cache, pkg.suites, pkg.arch)
        name = f"linux-headers-{pkg.release}"
        deps = parse_depends(_apt_show(name, apt).get("Depends", ""))
        debs = _fetch_debs(cache, [name] + [d for d in deps if d.startswith("linux-headers-")], apt, pkg.arch)
        # kbuild's host programs (fixdep, modpost) run here: the machine's architecture of linux-kbuild
        kbuild = [d for d in deps if d.startswith("linux-kbuild-")]
        debs += _fetch_debs(cache, kbuild, _apt_for(cache, pkg.suites))
        _extract(debs, root)
        for deb in debs:
            deb.unlink()
        if not (build / "Makefile").exists():
            raise KernelPackageError(f"{name} has no usr/src/{build.name}/Makefile")
    _privatize_makefile(build / "Makefile", root)
    return build


def _privatize_makefile(makefile: Path, root: Path) -> None:
    # The top Makefile names /usr/src paths: the -common tree it includes and, in newer packaging,
    # KBUILD_OUTPUT (the headers directory itself). Both must point at the private copy.
    old = makefile.read_text()
    text = re.sub(r"^(include\s+|KBUILD_OUTPUT\s*:?=\s*)\S*/usr/src/", rf"\g<1>{root}/usr/src/", old, flags=re.M)
    if text != old:
        makefile.write_text(text)


def _probe_debuginfo(root: Path, release: str) -> Path | None:
    # Older packages keep the file in boot/ and link lib/modules/RELEASE/vmlinux to it; Debian 13+
    # the other way round (with an absolute link, made relative by _relative_boot_link).
    return _first_file(root, [f"usr/lib/debug/boot/vmlinux-{release}", f"usr/lib/debug/lib/modules/{release}/vmlinux"])


def _relative_boot_link(root: Path, release: str) -> None:
    # An absolute symlink (/usr/lib/debug/...) would point into the host once unpacked elsewhere.
    link = root / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{release}"
    if link.is_symlink() and os.readlink(link).startswith("/"):
        target = root / os.readlink(link).lstrip("/")
        link.unlink()
        link.symlink_to(os.path.relpath(target, link.parent))


def cached_debuginfo(cache: Path, pkg: KernelPackage) -> Path | None:
    """The extracted ``-dbg`` vmlinux of ``pkg`` if it is in the cache, else None."""
    return _probe_debuginfo(kernel_dir(cache, pkg) / "dbg", pkg.release)


def fetch_debuginfo(cache: Path, pkg: KernelPackage) -> Path:
    """Extract the vmlinux (and the lab's module debug files) of the ``-dbg`` package.

    Returns the path of the debug vmlinux. Only these members are extracted; the ``.deb`` is
    deleted afterwards. ``usr/lib/debug/boot/vmlinux-RELEASE`` names it in every layout.
    """
    found = cached_debuginfo(cache, pkg)
    if found is not None:
        return found
    apt = _apt_for(cache, pkg.suites, pkg.arch)
    root = kernel_dir(cache, pkg) / "dbg"
    debug = f"./usr/lib/debug/lib/modules/{pkg.release}"
    members = [f"./usr/lib/debug/boot/vmlinux-{pkg.release}", f"{debug}/vmlinux"]
    members += [f"{debug}/kernel/drivers/*/{m}.ko*" for m in _DBG_MODULES]
    (deb,) = _fetch_debs(cache, [f"{pkg.name}-dbg"], apt, pkg.arch)
    _extract([deb], root, members)
    _relative_boot_link(root, pkg.release)
    found = _probe_debuginfo(root, pkg.release)
    if found is None:
        raise KernelPackageError(f"{deb.name} has no vmlinux for {pkg.release}")
    deb.unlink()
    return found


def fetch_busybox(cache: Path, arch: str) -> Path:
    """A static busybox for guests of ``arch`` (a foreign one: from its ``busybox-static`` package,
    unpacked under ``cache/tools/ARCH``, not installable beside the machine's); the machine's own
    architecture uses the installed ``/bin/busybox``."""
    if arch == HOST_ARCH:
        return Path("/bin/busybox")
    root = cache / "tools" / debian_arch(arch) / "busybox-static"
    found = root / "bin" / "busybox"
    if not found.is_file():
        (deb,) = _fetch_debs(cache, ["busybox-static"], _apt_for(cache, (), arch), arch)
        _extract([deb], root, ["./bin/busybox"])
        deb.unlink()
        if not found.is_file():
            raise KernelPackageError(f"{deb.name} has no bin/busybox")
    return found
