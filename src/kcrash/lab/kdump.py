"""
kcrash.lab.kdump
================

The production dump path in the lab (``kcrash lab crash KIND --via kdump``): the guest boots with
``crashkernel=``, sees the host's ``/`` read-only over 9p (``-virtfs ... mount_tag=hostfs``), loads the
same kernel as its capture kernel with Debian's ``kexec -p`` (kexec-tools and its libraries unpacked
from the host suite's packages into the cache, run chrooted in the host tree), and crashes. The
capture kernel's ``/init`` (the same initramfs, ``init-kdump.sh``) runs kcrash chrooted in the host
tree on ``/proc/vmcore`` and writes the dump to a second, writable 9p share, then powers off. Nothing
here touches the ``--via qemu`` path's initramfs or cache keys. The ``KCORE`` mode boots the same
guest without crashing and runs kcrash on the guest's own ``/proc/kcore``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kcrash.errors import KernelPackageError, LabError, LabTimeoutError
from kcrash.lab import debian
from kcrash.lab.crash import CrashOptions, _console_facts, _lab_json, kernel_cmdline
from kcrash.lab.initramfs import GUEST_MODULES, _module_bytes, cached_archive, find_module
from kcrash.lab.kinds import CrashKind
from kcrash.lab.locks import cache_lock
from kcrash.lab.prepare import PreparedKernel
from kcrash.lab.qemu import Vm, VmConfig, serial_tail

__all__ = ["KDUMP_MEM", "KdumpRun", "build_kdump_initramfs", "fetch_kexec", "kdump_cmdline", "run_kdump_crash",
           "run_kdump_vm"]

#: guest RAM and the reservation for the capture kernel (Debian 6.1/6.12 + python need ~160 MiB)
KDUMP_MEM = "768M"
CRASHKERNEL = "256M"
#: the collector's arguments (before IN OUT): kdump-tools' default MAKEDUMP_ARGS ("-c -d 31") after
#: ``kcrash collect vmcore``, as in /etc/default/kdump-tools with kcrash as the core collector
COLLECT_ARGS = ("collect", "vmcore", "-c", "-d", "31")
#: makedumpfile's arguments for the comparison dump (kdump-tools' default MAKEDUMP_ARGS)
MAKEDUMPFILE_ARGS = ("-c", "-d", "31")
#: what a kdump crash directory holds
FILES = ("vmcore.kcrash", "console.log", "collect.log")
#: written when the host has makedumpfile (the comparison)
MAKEDUMPFILE_FILE = "vmcore.makedumpfile"
# kinds init-kdump.sh can trigger (the test module's kinds and sysrq)
_TRIGGERS = ("module", "sysrq")
# 9p over virtio and what it needs, loaded in modules.dep order (some are built in on some kernels)
_NINEP_ROOTS = ("virtio_pci", "9pnet_virtio", "9p")
_PACKAGES = ("kexec-tools",)


def init_script() -> bytes:
    """The kdump guest's ``/init`` (shipped as package data)."""
    return (resources.files("kcrash.lab") / "init-kdump.sh").read_bytes()


def _depends(modules_root: Path, name: str) -> list[str] | None:
    # the module's .modinfo "depends=" entry (modules.dep is made by depmod at install, not shipped);
    # None when there is no such module file (built in)
    for candidate in dict.fromkeys((name, name.replace("_", "-"))):
        try:
            data = _module_bytes(find_module(modules_root, candidate))
        except LabError:
            continue
        match = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
        return [d.replace("-", "_") for d in match.group(1).decode().split(",") if d] if match else []
    return None


def module_order(modules_root: Path, roots: tuple[str, ...]) -> list[str]:
    """Modules to insmod for ``roots``, dependencies first (names with no module file are built in)."""
    order: list[str] = []

    def visit(name: str, depth: int) -> None:
        deps = None if name in order or depth > 32 else _depends(modules_root, name)
        if deps is None:
            return
        for dep in deps:
            visit(dep, depth + 1)
        if name not in order:
            order.append(name)

    for root in roots:
        visit(root.replace("-", "_"), 0)
    return order


def _contents(modules_root: Path, test_module: Path | None) -> dict[str, bytes]:
    files = {"init": init_script(), "bin/busybox": Path("/bin/busybox").read_bytes()}
    order = module_order(modules_root, _NINEP_ROOTS)
    loaded = []
    for name in [*order, *GUEST_MODULES]:
        try:
            path = find_module(modules_root, name)
        except LabError:
            try:
                path = find_module(modules_root, name.replace("_", "-"))
            except LabError:
                continue
        files[f"modules/{name}.ko"] = _module_bytes(path)
        loaded.append(name)
    files["modules/order"] = ("\n".join(dict.fromkeys(loaded)) + "\n").encode()
    if test_module is not None:
        files["modules/kcrash_test.ko"] = test_module.read_bytes()
    return files


def build_kdump_initramfs(cache: Path, modules_root: Path, test_module: Path | None) -> Path:
    """Build (or reuse) the kdump guest's initramfs (its own cache name: ``kdump-HASH.cpio.gz``)."""
    return cached_archive(cache, _contents(modules_root, test_module), prefix="kdump-")


def _missing_on_host(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True,
                          check=False)
    return "install ok installed" not in proc.stdout


def _closure(packages: tuple[str, ...]) -> list[str]:
    # the package and those of its dependencies the host lacks (kexec-tools: libxenmisc and friends)
    todo, seen = list(packages), list[str]()
    while todo and len(seen) < 64:
        name = todo.pop()
        if name in seen or (name not in packages and not _missing_on_host(name)):
            continue
        seen.append(name)
        todo += [d for d in debian.parse_depends(debian._apt_show(name).get("Depends", ""))
                 if not d.startswith("debconf")]
    return seen


def fetch_kexec(cache: Path) -> Path:
    """Root of Debian's kexec-tools unpacked with the libraries the host lacks (``sbin/kexec``)."""
    root = cache / "tools" / "kexec-tools"
    with cache_lock(cache, "kexec-tools"):
        if (root / "sbin" / "kexec").exists():
            return root
        names = _closure(_PACKAGES)
        debs = debian._fetch_debs(cache, names, None)
        debian._extract(debs, root)
        if not (root / "sbin" / "kexec").exists():
            raise KernelPackageError(f"no sbin/kexec in {', '.join(d.name for d in debs)}")
    return root


def kdump_cmdline(base: str, kexec_root: Path, vmlinuz: Path, initrd: Path) -> str:
    """The first kernel's command line: ``base`` plus ``crashkernel=`` and the host paths /init needs."""
    collect = ",".join(COLLECT_ARGS)
    return (f"{base} crashkernel={CRASHKERNEL} kcrash_kexec={kexec_root} kcrash_vmlinuz={vmlinuz} "
            f"kcrash_initrd={initrd} kcrash_python={sys.executable} kcrash_collect={collect} "
            f"kcrash_makedumpfile={','.join(MAKEDUMPFILE_ARGS)}")


def _virtfs(out: Path) -> tuple[str, ...]:
    # -cpu max: the collector's Python stack (numpy) uses instructions TCG's default qemu64 CPU lacks;
    # la57 off keeps 4-level paging as in the --via qemu guests
    # multidevs=remap: the host's / spans several filesystems whose inode numbers collide (without it the
    # guest took /sys for /proc: a mount on one showed on the other)
    return ("-cpu", "max,la57=off",
            "-virtfs", "local,path=/,mount_tag=hostfs,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={out},mount_tag=out,security_model=none")


@dataclass(frozen=True, slots=True)
class KdumpRun:
    """What one kdump guest run did: the collector's status line and host timings."""

    status: str
    boot_to_off_s: float
    event: str


async def _run(cfg: VmConfig, timeout: float) -> KdumpRun:
    async with Vm(cfg) as vm:
        start = time.monotonic()
        try:
            event = await vm.wait_event(("SHUTDOWN", "GUEST_PANICKED"), timeout)
        except LabError as exc:
            if vm.proc is None or vm.proc.poll() is None:
                raise
            # QEMU exits at the guest's poweroff (-no-reboot) before the event is read
            event = {"event": "SHUTDOWN", "note": str(exc)}
        took = time.monotonic() - start
    if event["event"] == "GUEST_PANICKED":
        raise LabError("the guest panicked into pvpanic instead of the capture kernel (kexec -p did not "
                       f"load or failed): {serial_tail(cfg.serial, 8)}")
    return KdumpRun("", took, str(event["event"]))


def run_kdump_vm(vmlinuz: Path, initrd: Path, append: str, out: Path, mem: str, smp: int,
                 timeout: float) -> KdumpRun:
    """Boot the kdump guest with ``out`` as its writable share; wait for its poweroff."""
    with tempfile.TemporaryDirectory(prefix="kcrash-kdump-") as tmp:
        cfg = VmConfig(vmlinuz, initrd, append, out / "console.log", Path(tmp) / "qmp.sock", mem, smp,
                       extra=_virtfs(out))
        try:
            run = asyncio.run(_run(cfg, timeout))
        except LabTimeoutError as exc:
            raise LabTimeoutError(f"kdump guest did not power off within {timeout:.0f} s", str(exc)) from exc
    status = (out / "collect.status").read_text().strip() if (out / "collect.status").exists() else ""
    # kcrash's cache inside the guest (HOME is the share there): not part of the result
    shutil.rmtree(out / ".cache", ignore_errors=True)
    return KdumpRun(status, run.boot_to_off_s, run.event)


def collect_status(run: KdumpRun) -> dict[str, Any]:
    """The capture kernel's ``RC START END`` line as numbers (empty when it never ran)."""
    parts = run.status.split()
    if len(parts) != 3:
        return {}
    return {"rc": int(parts[0]), "capture_uptime_start_s": float(parts[1]), "capture_uptime_end_s": float(parts[2])}


def _mebibytes(size: str) -> int:
    units = {"K": 1 / 1024, "M": 1, "G": 1024}
    return int(float(size[:-1]) * units[size[-1].upper()]) if size[-1:].upper() in units else int(size) >> 20


def guest_mem(opts: CrashOptions) -> str:
    """RAM of the kdump guest: ``opts.mem``, raised to :data:`KDUMP_MEM` when too small to hold the
    ``crashkernel=`` reservation beside a working first kernel."""
    return opts.mem if _mebibytes(opts.mem) >= _mebibytes(KDUMP_MEM) else KDUMP_MEM


def run_kdump_crash(cache: Path, prepared: PreparedKernel, kind: CrashKind, opts: CrashOptions,
                    out: Path) -> dict[str, Any]:
    """Crash ``kind`` with a kexec'd capture kernel collecting the dump; returns ``lab.json``'s content."""
    if kind.trigger not in _TRIGGERS:
        raise LabError(f"--via kdump triggers {', '.join(_TRIGGERS)} kinds only; {kind.name} is a {kind.trigger} kind")
    start = time.monotonic()
    kexec = fetch_kexec(cache)
    initrd = build_kdump_initramfs(cache, prepared.modules_root, prepared.module.path if prepared.module else None)
    out.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, MAKEDUMPFILE_FILE, "makedumpfile.log", "collect.status", "lab.json"):
        (out / name).unlink(missing_ok=True)
    append = kdump_cmdline(kernel_cmdline(kind, opts.kaslr), kexec, prepared.vmlinuz, initrd)
    timeout = opts.timeout or (600.0 if kind.slow else 480.0)
    run = run_kdump_vm(prepared.vmlinuz, initrd, append, out, guest_mem(opts), opts.smp, timeout)
    status = collect_status(run)
    if not status or status["rc"] != 0 or not (out / "vmcore.kcrash").exists():
        log = (out / "collect.log").read_text(errors="replace")[-600:] if (out / "collect.log").exists() else ""
        raise LabError(f"the capture kernel's collector failed (status {run.status or 'none'}): {log.strip()}")
    info = _lab_json(prepared, kind, opts, {"timings": {"boot_to_poweroff_s": round(run.boot_to_off_s, 2),
                                                        "collect_s": round(status["capture_uptime_end_s"]
                                                                           - status["capture_uptime_start_s"], 2)},
                                            "via": "kdump", "kdump": {
                                                "crashkernel": CRASHKERNEL, "collector_args": list(COLLECT_ARGS),
                                                "makedumpfile_args": list(MAKEDUMPFILE_ARGS),
                                                "makedumpfile_file": MAKEDUMPFILE_FILE
                                                if (out / MAKEDUMPFILE_FILE).exists() else None,
                                                "capture_status": status, "kexec_root": str(kexec),
                                                "initramfs": initrd.name}},
                     out, time.monotonic() - start, FILES)
    info["cmdline"] = append
    info["mem"] = guest_mem(opts)
    info.update(_console_facts(_first_kernel_console(out)))
    (out / "lab.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def _first_kernel_console(out: Path) -> str:
    # console.log holds both kernels; the crashed one's lines end where the capture kernel starts
    text = (out / "console.log").read_text(errors="replace")
    second = text.find("Linux version", text.find("Linux version") + 1)
    return text if second < 0 else text[:second]


#: what the KCORE guest writes to its share: kcrash's JSON per command and the guest's own view
KCORE_COMMANDS = ("sys", "ps", "log", "mod", "bt")


def run_kcore_guest(cache: Path, prepared: PreparedKernel, out: Path, timeout: float = 480.0) -> KdumpRun:
    """Boot the kdump guest without crashing; it runs ``kcrash CMD /proc/kcore --json`` for
    :data:`KCORE_COMMANDS` (``bt 1``) chrooted in the host tree and writes ``kcore-CMD.json``/``.err``
    beside ``/proc``'s view (``proc-comm.txt``, ``proc-modules.txt``, ``uname.txt``, ``dmesg.txt``) into ``out``."""
    initrd = build_kdump_initramfs(cache, prepared.modules_root, prepared.module.path if prepared.module else None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kcore.status").unlink(missing_ok=True)
    base = kernel_cmdline(None, False).replace("kcrash_kind=none", "kcrash_kind=KCORE")
    append = kdump_cmdline(base, fetch_kexec(cache), prepared.vmlinuz, initrd)
    run = run_kdump_vm(prepared.vmlinuz, initrd, append, out, KDUMP_MEM, 2, timeout)
    if not (out / "kcore.status").exists():
        raise LabError(f"the kcore guest powered off without finishing: {serial_tail(out / 'console.log', 8)}")
    return run
