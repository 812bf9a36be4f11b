"""
kcrash.lab.crash
================

Crash a real Debian kernel on purpose and collect the dump through QMP: boot the prepared guest
with the crash kind on its command line, wait for ``GUEST_PANICKED`` (pvpanic freezes the VM
inside ``panic()``), stop it, and write ``vmcore.elf`` (QEMU ELF, paging off), ``vmcore.kdump``
(QEMU kdump-zlib, flattened format), ``vmcore.kcrash`` (kcrash's own collector,
:mod:`kcrash.collect.qemu`: a kdump-compressed file filtered at dump level 31, read from the
guest's shared RAM file; QEMU's two dumps stay as the comparison), ``console.log`` and ``lab.json``
(what was run and the facts the test module planted). :func:`cached_crash` reuses earlier results by
content key; crash directories made before the collector existed have no ``vmcore.kcrash`` (and no
``collector`` key in ``lab.json``).

``CrashOptions.arch`` ``arm64`` crashes Debian's arm64 kernel of the same flavour under
``qemu-system-aarch64`` (TCG): console on ``ttyAMA0``, and since those kernels have no pvpanic the
panic is seen on the serial console (the line ``---[ end Kernel panic``, printed when ``panic()`` is
done) before the VM is stopped and dumped. kcrash's collector is not run there (``lab.json``'s
``collector`` says why). The architecture is part of the crash key and of the directory name
(``bug-6.12-arm64-HASH``) for arm64 only, so x86-64 keys are unchanged.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcrash.collect.convert import ConvertOptions
from kcrash.collect.qemu import collect_qemu
from kcrash.errors import LabError, LabTimeoutError
from kcrash.lab.arches import HOST_ARCH, get_arch
from kcrash.lab.debian import get_flavour
from kcrash.lab.kinds import CrashKind, get_kind, kind_for_arch, supported_kinds, unsupported_on_arch
from kcrash.lab.kmod import MODULE_NAME
from kcrash.lab.prepare import PreparedKernel, prepare_kernel
from kcrash.lab.qemu import Vm, VmConfig, qemu_command, shm_ram_file

__all__ = ["CrashOptions", "cached_crash", "crash_key", "kernel_cmdline", "planted_facts", "run_crash"]

OBJECT_COUNT = 100
# Bump when what a crash directory holds changes (new files, new lab.json keys), so cached crashes are remade.
LAB_FORMAT = 3
# After the dumps are taken, the guest runs this long (at most) so panic() flushes its console.
CONSOLE_FLUSH_SECONDS = 3.0
FILES = ("vmcore.elf", "vmcore.kdump", "console.log", "lab.json")
#: written by kcrash's collector (not in FILES: older cached crashes lack it)
COLLECTED = "vmcore.kcrash"
#: per non-default dump path, a number to bump when its guest side changes (part of its crash keys;
#: kdump 2: init-kdump.sh plants init.sh's files and sockets)
VIA_FORMAT = {"kdump": 2}
COLLECT_OPTIONS = ConvertOptions(dump_level=31, codec="zlib", format="kdump", threads=1)


@dataclass(frozen=True, slots=True)
class CrashOptions:
    """What to crash and how."""

    kind: str
    kernel: str = "6.1"
    kaslr: bool = False
    mem: str = "256M"
    smp: int = 2
    timeout: float | None = None
    #: ``qemu`` (QMP dump-guest-memory, the default) or ``kdump`` (kexec -p capture kernel,
    #: :mod:`kcrash.lab.kdump`)
    via: str = "qemu"
    #: the guest architecture: ``x86_64`` (the default) or ``arm64``
    arch: str = "x86_64"


#: the last line panic() prints; guests without pvpanic are dumped once it is on the console
PANIC_END_MARKER = b"---[ end Kernel panic"


def kernel_cmdline(kind: CrashKind | None, kaslr: bool, arch: str = "x86_64") -> str:
    """The guest kernel command line (``kind`` None boots an idle guest)."""
    parts = [f"console={get_arch(arch).console}", "panic=0", "oops=panic", "loglevel=7",
             f"kcrash_kind={kind.name if kind else 'none'}", f"kcrash_alloc={OBJECT_COUNT}"]
    if not kaslr:
        parts.append("nokaslr")
    return " ".join(parts)


def _supported_kind(prepared: PreparedKernel, name: str) -> CrashKind:
    kind = get_kind(name)
    why = unsupported_on_arch(kind, prepared.package.arch)
    if why:
        raise LabError(f"{kind.name} does not work on {prepared.package.arch}: {why}")
    kind = kind_for_arch(kind, prepared.package.arch)
    if prepared.module is None and kind.trigger == "module":
        flavour = get_flavour(prepared.package.flavour)
        raise LabError(f"{kind.name} needs the test module, which is not built for kernel {flavour.name} "
                       f"({flavour.why}); it supports {', '.join(supported_kinds(False))}")
    return kind


def crash_key(prepared: PreparedKernel, opts: CrashOptions) -> str:
    """Content key of a crash run: lab format, kernel package, module source, initramfs and options."""
    kind = _supported_kind(prepared, opts.kind)
    module_hash = prepared.module.source_hash if prepared.module else "no-module"
    text = "|".join([str(LAB_FORMAT), prepared.package.key, module_hash, prepared.initramfs.name,
                     kind.name,
                     str(opts.kaslr), opts.mem, str(opts.smp)]
                    # the kdump path has its own key component (the qemu keys stay as they were)
                    + ([f"via={opts.via}-{VIA_FORMAT[opts.via]}"] if opts.via != "qemu" else [])
                    # so does a foreign architecture (x86-64 keys stay as they were)
                    + ([f"arch={opts.arch}"] if opts.arch != HOST_ARCH else []))
    arch = f"-{opts.arch}" if opts.arch != HOST_ARCH else ""
    return f"{kind.name.lower()}-{opts.kernel}{arch}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def planted_facts(console: str) -> dict[str, Any]:
    """Facts the test module planted, with the addresses it printed at load time."""
    facts: dict[str, Any] = {
        "module": MODULE_NAME, "object_count": OBJECT_COUNT, "object_struct": "kcrash_test_obj",
        "object_magic": 0xC0FFEE01, "list": "kcrash_test_objects", "slab_cache": "kcrash_test_cache",
        "global": "kcrash_test_global",
        "global_values": {"magic": 0xC0FFEE01, "answer": 42, "negative": -1234567,
                          "big": 0x0123456789ABCDEF, "name": "kcrash planted global",
                          "flag_a": 1, "mode": 5, "level": 9, "nr_objects": OBJECT_COUNT},
        "sleeper_task": "kcrash_sleeper", "sleeper_function": "kcrash_test_sleep_deep",
        "hostile_task": "<i>x</i>&\"'", "nonutf8_task_hex": b"nu\xff\xfe\x01<b>".hex(),
        # Corrupted structures: a list with a cycle that never returns to its head (3 objects, the third
        # pointing back to the second) and a pointer to freed (unmapped) vmalloc memory.
        "cycle_list": "kcrash_test_cycle", "cycle_objects": 3, "dangling_pointer": "kcrash_test_dangling",
    }
    match = re.search(r"kcrash_test: planted (\d+) objects at ([0-9a-f]+), global at ([0-9a-f]+)", console)
    if match:
        facts["planted_count_printed"] = int(match.group(1))
        facts["list_address"] = int(match.group(2), 16)
        facts["global_address"] = int(match.group(3), 16)
    return facts


def _console_facts(console: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    panic = re.search(r"^(?:\[\s*([\d.]+)\]\s*)?Kernel panic - not syncing: (.*)$", console, re.M)
    if panic:
        facts["panic_line"] = panic.group(2).strip()
        if panic.group(1):
            facts["panic_uptime_s"] = float(panic.group(1))
    release = re.search(r"Linux version (\S+)", console)
    if release:
        facts["release_booted"] = release.group(1)
    return facts


async def _nmi_when_ready(vm: Vm, serial: Path, state: dict[str, bool]) -> None:
    if state.get("sent"):
        return
    try:
        text = serial.read_text(errors="replace")
    except OSError:
        return
    if "kcrash-lab: ready kind=NMI" in text:
        await vm.execute("inject-nmi")
        state["sent"] = True


async def _flush_console(vm: Vm, serial: Path) -> bool:
    # pvpanic pauses the guest inside panic() before the console is flushed, so the serial log can miss
    # the end of the oops (NMI, stack overflow). The dumps are taken by now; let panic() finish printing.
    await vm.execute("cont")
    deadline = time.monotonic() + CONSOLE_FLUSH_SECONDS
    while time.monotonic() < deadline:
        if b"---[ end Kernel panic" in serial.read_bytes():
            return True
        await asyncio.sleep(0.1)
    return False


async def _console_run_vm(prepared: PreparedKernel, kind: CrashKind, opts: CrashOptions, out: Path,
                          sock_dir: Path) -> dict[str, Any]:
    # No pvpanic: the end of the panic on the serial console is the signal; the console is complete then.
    serial = out / "console.log"
    cfg = VmConfig(prepared.vmlinuz, prepared.initramfs, kernel_cmdline(kind, opts.kaslr, opts.arch), serial,
                   sock_dir / "qmp.sock", opts.mem, opts.smp, arch=opts.arch)
    timeout = opts.timeout or (240.0 if kind.slow else 150.0)
    async with Vm(cfg) as vm:
        version = await vm.execute("query-version")
        start = time.monotonic()
        await vm.wait_console(PANIC_END_MARKER, timeout)
        panicked = time.monotonic() - start
        await vm.execute("stop")
        status = await vm.execute("query-status")
        t_elf = await vm.dump(out / "vmcore.elf", "elf")
        t_kdump = await vm.dump(out / "vmcore.kdump", "kdump-zlib")
    q = version["qemu"]
    cmd = qemu_command(cfg)
    return {"qemu_version": f"{q['major']}.{q['minor']}.{q['micro']}", "status_after_stop": status["status"],
            "qemu_machine": cmd[cmd.index("-machine") + 1], "qemu_cpu": cmd[cmd.index("-cpu") + 1],
            "console_flushed_after_dump": True, "panic_detected_by": "console",
            "timings": {"boot_to_panic_s": round(panicked, 2), "dump_elf_s": round(t_elf, 2),
                        "dump_kdump_s": round(t_kdump, 2)},
            "collector": {"file": None, "skipped": get_arch(opts.arch).no_collector}}


async def _run_vm(prepared: PreparedKernel, kind: CrashKind, opts: CrashOptions, out: Path,
                  sock_dir: Path) -> dict[str, Any]:
    if not get_arch(opts.arch).pvpanic:
        return await _console_run_vm(prepared, kind, opts, out, sock_dir)
    serial = out / "console.log"
    cfg = VmConfig(prepared.vmlinuz, prepared.initramfs, kernel_cmdline(kind, opts.kaslr), serial,
                   sock_dir / "qmp.sock", opts.mem, opts.smp, ram_file=shm_ram_file("lab"))
    timeout = opts.timeout or (150.0 if kind.slow else 90.0)
    state: dict[str, bool] = {}
    async with Vm(cfg) as vm:
        version = await vm.execute("query-version")
        start = time.monotonic()
        tick = (lambda: _nmi_when_ready(vm, serial, state)) if kind.trigger == "nmi" else None
        await vm.wait_event(("GUEST_PANICKED",), timeout, tick)
        panicked = time.monotonic() - start
        await vm.execute("stop")
        status = await vm.execute("query-status")
        t_elf = await vm.dump(out / "vmcore.elf", "elf")
        t_kdump = await vm.dump(out / "vmcore.kdump", "kdump-zlib")
        collected = await collect_qemu(vm.execute, out / COLLECTED, COLLECT_OPTIONS, resume=False)
        flushed = await _flush_console(vm, serial)
    q = version["qemu"]
    res = collected.result
    return {"qemu_version": f"{q['major']}.{q['minor']}.{q['micro']}", "status_after_stop": status["status"],
            "console_flushed_after_dump": flushed,
            "timings": {"boot_to_panic_s": round(panicked, 2), "dump_elf_s": round(t_elf, 2),
                        "dump_kdump_s": round(t_kdump, 2), "collect_s": round(res.seconds, 2)},
            "collector": {"file": COLLECTED, "dump_level": COLLECT_OPTIONS.dump_level, "codec": COLLECT_OPTIONS.codec,
                          "size": res.write.size, "incomplete": res.write.incomplete,
                          "vmcoreinfo": collected.vmcoreinfo,
                          "excluded": res.report.excluded, "remaining": res.report.remaining}}


def _module_json(prepared: PreparedKernel) -> dict[str, Any] | None:
    module = prepared.module
    if module is None:
        return None
    return {"name": MODULE_NAME, "source_hash": module.source_hash, "btf": module.has_btf, "path": str(module.path)}


def _lab_json(prepared: PreparedKernel, kind: CrashKind, opts: CrashOptions, run: dict[str, Any],
              out: Path, total: float, files: tuple[str, ...] = FILES[:3]) -> dict[str, Any]:
    console = (out / "console.log").read_text(errors="replace")
    pkg = prepared.package
    info: dict[str, Any] = {
        "kind": kind.name, "trigger": kind.trigger,
        "kernel": {"flavour": pkg.flavour, "package": pkg.name, "version": pkg.version, "release": pkg.release},
        "arch": opts.arch,
        "kaslr": opts.kaslr, "mem": opts.mem, "smp": opts.smp, "cmdline": kernel_cmdline(kind, opts.kaslr, opts.arch),
        "crash_function": kind.crash_function, "blocked_function": kind.blocked_function,
        "expected_panic_message": kind.panic_message,
        "module": _module_json(prepared),
        "planted": planted_facts(console) if prepared.module else {}, **_console_facts(console), **run,
    }
    info["timings"]["total_s"] = round(total, 2)
    info["files"] = {name: (out / name).stat().st_size for name in files}
    return info


def run_crash(cache: Path, opts: CrashOptions, out: Path) -> dict[str, Any]:
    """Boot, crash and dump one guest into ``out``; returns the ``lab.json`` content.

    ``lab.json``'s ``module`` is None on kernels the test module is not built for.
    """
    start = time.monotonic()
    prepared = prepare_kernel(cache, opts.kernel, opts.arch)
    kind = _supported_kind(prepared, opts.kind)
    if opts.via != "qemu" and opts.arch != HOST_ARCH:
        raise LabError(f"--via {opts.via} is x86-64 only; {opts.arch} guests are dumped through QMP")
    if opts.via == "kdump":
        # lazy: kdump imports this module's helpers
        from kcrash.lab.kdump import run_kdump_crash

        return run_kdump_crash(cache, prepared, kind, opts, out)
    if opts.via != "qemu":
        raise LabError(f"unknown dump path {opts.via!r} (qemu or kdump)")
    out.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, COLLECTED):
        (out / name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="kcrash-lab-") as sock_dir:
        run = asyncio.run(_run_vm(prepared, kind, opts, out, Path(sock_dir)))
    info = _lab_json(prepared, kind, opts, run, out, time.monotonic() - start)
    (out / "lab.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def cached_crash(cache: Path, opts: CrashOptions) -> Path:
    """A crash directory for ``opts``, produced once and reused (keyed by content).

    Safe for concurrent callers: one produces the crash under a lock, the others wait and reuse it.
    """
    prepared = prepare_kernel(cache, opts.kernel, opts.arch)
    final = cache / "crashes" / crash_key(prepared, opts)
    if (final / "lab.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with (final.parent / f"{final.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "lab.json").exists():
            _produce(cache, opts, final)
    return final


def _produce(cache: Path, opts: CrashOptions, final: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", suffix=".part", dir=final.parent))
    try:
        try:
            run_crash(cache, opts, work)
        except LabTimeoutError:
            # A guest starved of CPU on a loaded machine can miss the deadline once; a second
            # timeout is a real failure.
            run_crash(cache, opts, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
