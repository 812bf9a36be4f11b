"""
kcrash.analysis.decode
======================

Decoding a console oops with debug information, like the kernel's ``scripts/decode_stacktrace.sh``
plus ``scripts/decodecode``: every ``func+0x…/0x… [module]`` frame and the ``RIP:`` line get their
source lines and inline chain (from symbol + offset, so KASLR does not matter), and the ``Code:``
bytes are disassembled with capstone, the faulting instruction marked. The log is parsed by
:mod:`kcrash.oops`; addresses are resolved by a :class:`~kcrash.debuginfo.symbolizer.KernelSymbolizer`.
Rendering beyond the annotated text lines is the CLI's job.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kcrash.analysis.x86_disasm import Instruction, disassemble
from kcrash.debuginfo.kernel_build import KernelBuild
from kcrash.debuginfo.symbolizer import KernelSymbolizer, SourceLocation, format_location
from kcrash.debuginfo.symbols import lookup_address
from kcrash.errors import KcrashError, MissingDebugInfoError, OopsParseError
from kcrash.oops import CodeBytes, OopsReport, TraceFrame, parse_all
from kcrash.oops.details import parse_code, parse_frame

__all__ = [
    "DecodedFrame",
    "DecodedLog",
    "Instruction",
    "check_frame_sizes",
    "decode_log_text",
    "disassemble",
    "disassemble_code_line",
    "frame_key",
    "log_kernel_build",
    "source_roots",
]

_MAX_INSN = 15
_RIP = "RIP: "
_BANNER = "Linux version "
_CODE = "Code: "
#: A user-mode ``RIP:`` line: show_ip() prints the IP with ``%pS`` of a user address, i.e. ``0x…``.
_USER_RIP = re.compile(r"RIP: [0-9a-f]{4}:0x([0-9a-f]+)\b")


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One ``func+off/size [module]`` frame and what the debug information says about it.

    ``address`` is where ``func+off`` lies; ``interrupted`` says whether that is the IP of a ``RIP:``
    line (looked up as is) or a return address of the call trace (looked up one byte back, at the
    call site: :func:`~kcrash.debuginfo.symbolizer.lookup_address`, the rule ``bt --debuginfo``
    follows). ``error`` says why ``locations`` is empty (no debug file for the module, unknown symbol)."""

    function: str
    offset: int
    size: int | None
    module: str
    address: int | None
    locations: tuple[SourceLocation, ...]
    error: str = ""
    interrupted: bool = False

    def annotation(self, strip_prefix: str = "") -> str:
        """``(file:line file:line …)`` as decode_stacktrace.sh prints it (innermost first)."""
        return "(" + " ".join(format_location(loc, strip_prefix) for loc in self.locations) + ")"


@dataclass(frozen=True, slots=True)
class DecodedLog:
    """The annotated log lines, the frames decoded (by ``function+off/size`` key; where the same key
    is both a ``RIP:`` and a call-trace frame, the ``RIP:`` one) and the disassembly of every
    ``Code:`` line, in the order of the log, each from its own bytes."""

    lines: tuple[str, ...]
    frames: dict[str, DecodedFrame]
    code: tuple[tuple[Instruction, ...], ...]
    reports: tuple[OopsReport, ...]


#: A frame's key and whether it is an interrupted (``RIP:``) frame.
_Role = tuple[str, bool]


def frame_key(frame: TraceFrame) -> str:
    """How the kernel prints the frame (``%pS``) without the module: ``func+0x1f/0x80``."""
    size = f"/{frame.size:#x}" if frame.size is not None else ""
    return f"{frame.function}+{frame.offset or 0:#x}{size}"


def decode_log_text(text: str, symbolizer: KernelSymbolizer, *, syntax: str = "intel",
                    strip_prefixes: dict[str, str] | None = None,
                    reports: Sequence[OopsReport] | None = None) -> DecodedLog:
    """Decode every crash report in ``text``.

    :param strip_prefixes: per module (``""`` for vmlinux), a source-tree path removed from file
        names, as decode_stacktrace.sh's ``basepath``; by default each debug file's compilation
        directory (:meth:`~kcrash.debuginfo.symbolizer.Symbolizer.source_root_or_none`).
    :param reports: ``parse_all(text)`` when the caller has it already (it is not parsed again).
    :raises OopsParseError: the log holds no call trace or ``RIP:`` frame to decode.
    """
    reports = tuple(parse_all(text) if reports is None else reports)
    by_role = _decode_frames(_frames_of(reports, text), symbolizer)
    if not by_role:
        raise OopsParseError("no kernel call trace (func+0x…/0x… frames) found in the log")
    prefixes = strip_prefixes if strip_prefixes is not None else source_roots(symbolizer)
    lines: list[str] = []
    code: list[tuple[Instruction, ...]] = []
    for line, block in _annotate(text, by_role, syntax, prefixes):
        lines.append(line)
        if block is not None:
            code.append(block)
            lines.extend(_code_lines(block))
    frames = {key: f for (key, _), f in sorted(by_role.items(), key=lambda item: item[0][1])}
    return DecodedLog(tuple(lines), frames, tuple(code), reports)


def log_kernel_build(text: str, reports: Sequence[OopsReport]) -> KernelBuild:
    """What a console log says of its kernel build: the ``Linux version`` banner line logged last
    before the first report (a later one is another boot, e.g. the kdump kernel's), and the first
    oops header's release and version (``6.12.118+deb12-amd64 #1 Debian 6.12.118-1~deb12u1``).

    :param reports: ``parse_all(text)``.
    """
    end = reports[0].start_pos if reports else len(text)
    at = text.rfind(_BANNER, 0, end)
    banner = text[at:].split("\n", 1)[0].strip() if at >= 0 else None
    release = next((r.details.kernel_release for r in reports if r.details.kernel_release), None)
    return KernelBuild(release, _header_version(reports, release) if release else None, banner)


def _header_version(reports: Sequence[OopsReport], release: str) -> str | None:
    # The words after the release on the oops header (lib/dump_stack.c dump_stack_print_info()).
    for report in reports:
        for line in report.report.splitlines():
            if "Comm: " in line and f" {release} " in line:
                return line.split(f" {release} ", 1)[1].strip() or None
    return None


def source_roots(symbolizer: KernelSymbolizer) -> dict[str, str]:
    """The compilation directory of vmlinux (key ``""``) and of each module, as far as known."""
    out = {name: module.source_root_or_none() or "" for name, module in symbolizer.modules.items()}
    if symbolizer.vmlinux is not None:
        out[""] = symbolizer.vmlinux.source_root_or_none() or ""
    return out


def _frames_of(reports: Iterable[OopsReport], text: str) -> list[tuple[TraceFrame, bool]]:
    # The call-trace frames (return addresses) of every report, and the interrupted frames: each
    # report's RIP and every ``RIP:`` line of the log (a report's later register dumps too).
    out: list[tuple[TraceFrame, bool]] = []
    for report in reports:
        rip = report.details.rip
        out.extend((f, True) for f in ([rip] if rip else []))
        out.extend((f, False) for f in report.details.call_trace)
    out.extend((f, True) for f in map(_rip_frame_or_none, text.splitlines()) if f is not None)
    return [(f, interrupted) for f, interrupted in out if f.function and f.offset is not None]


def _rip_frame_or_none(line: str) -> TraceFrame | None:
    # ``RIP: 0010:func+0x5/0x10 [module]`` (arch/x86/kernel/dumpstack.c show_ip(): ``%04x:%pS``).
    at = line.find(_RIP)
    if at < 0:
        return None
    rest = line[at + len(_RIP):]
    return parse_frame(rest.split(":", 1)[1] if rest[4:5] == ":" else rest)


def _rip_address_or_none(line: str, frame: DecodedFrame | None) -> int | None:
    # The IP of a ``RIP:`` line: its decoded frame's address, or a user-space ``RIP: 0033:0x47b7a0``.
    if frame is not None:
        return frame.address
    found = _USER_RIP.search(line)
    return int(found.group(1), 16) if found else None


def _decode_frames(frames: list[tuple[TraceFrame, bool]], symbolizer: KernelSymbolizer) -> dict[_Role, DecodedFrame]:
    unique: dict[_Role, TraceFrame] = {}
    for frame, interrupted in frames:
        unique.setdefault((frame_key(frame), interrupted), frame)
    located = {role: _locate(frame, symbolizer) for role, frame in unique.items()}
    _prefetch(unique, located, symbolizer)
    return {role: _decode_frame(frame, role[1], located[role], symbolizer) for role, frame in unique.items()}


def _locate(frame: TraceFrame, symbolizer: KernelSymbolizer) -> int | KcrashError:
    try:
        return symbolizer.locate(frame.function, frame.offset or 0, frame.module, frame.size)
    except KcrashError as exc:
        return exc


def _prefetch(unique: dict[_Role, TraceFrame], located: dict[_Role, int | KcrashError],
              symbolizer: KernelSymbolizer) -> None:
    # Index the units of all frames at once (in parallel where possible) before symbolizing them one
    # by one; a failure here shows up again, per frame, in _decode_frame.
    by_module: dict[str, list[int]] = {}
    for role, frame in unique.items():
        address = located[role]
        if not isinstance(address, KcrashError):
            by_module.setdefault(frame.module, []).append(lookup_address(address, interrupted=role[1]))
    for module, addresses in by_module.items():
        with contextlib.suppress(KcrashError):
            symbolizer.object_for(module).prefetch(addresses)


def _decode_frame(frame: TraceFrame, interrupted: bool, located: int | KcrashError,
                  symbolizer: KernelSymbolizer) -> DecodedFrame:
    offset = frame.offset or 0
    try:
        if isinstance(located, KcrashError):
            raise located
        at = lookup_address(located, interrupted=interrupted)
        locations = symbolizer.object_for(frame.module).symbolize(at)
    except KcrashError as exc:
        return DecodedFrame(frame.function, offset, frame.size, frame.module, None, (), str(exc), interrupted)
    return DecodedFrame(frame.function, offset, frame.size, frame.module, located, locations, "", interrupted)


def check_frame_sizes(frames: Iterable[DecodedFrame], symbolizer: KernelSymbolizer) -> None:
    """Refuse debug files of another build: most frames' function sizes (the ``/0x80`` part) must
    equal the sizes the kernel computes from the ELF symbol table (distance to the next symbol).

    :raises MissingDebugInfoError: more than half of the checkable frames disagree.
    """
    checked = wrong = 0
    examples = []
    for frame in frames:
        if frame.address is None or frame.size is None:
            continue
        table = symbolizer.object_for(frame.module).symbols
        sizes = {table.kallsyms_size(s) for s in table.get_symbols_by_name(frame.function)}
        checked += 1
        if frame.size not in sizes:
            wrong += 1
            examples.append(f"{frame.function} is {sorted(sizes)[0]:#x} bytes, the log says {frame.size:#x}")
    if checked and wrong * 2 > checked:
        raise MissingDebugInfoError(
            f"the debug files are of another kernel build ({wrong} of {checked} frames disagree: "
            f"{examples[0]}); pass the matching -dbg files, or --force")


def disassemble_code_line(code: CodeBytes, start: int | None, syntax: str = "intel") -> tuple[Instruction, ...]:
    """Disassemble ``Code:`` bytes like ``scripts/decodecode``: from the faulting byte on, and before
    it from the first offset whose instructions end exactly at the faulting byte.

    :param start: the address of the first byte (RIP minus the fault index), or None for offsets.
    """
    base = start if start is not None else 0
    fault = code.fault_index
    if fault is None:
        return disassemble(code.data, base, syntax)
    head: tuple[Instruction, ...] = ()
    for skip in range(min(fault, _MAX_INSN)):
        candidate = disassemble(code.data[skip:fault], base + skip, syntax)
        if candidate and sum(len(i.data) for i in candidate) == fault - skip:
            head = candidate
            break
    tail = disassemble(code.data[fault:], base + fault, syntax)
    if tail:
        first = tail[0]
        tail = (Instruction(first.address, first.data, first.text, True), *tail[1:])
    return head + tail


def _annotate(text: str, frames: dict[_Role, DecodedFrame], syntax: str,
              strip: dict[str, str]) -> Iterable[tuple[str, tuple[Instruction, ...] | None]]:
    # Each line, annotated when it holds a decoded frame, with the disassembly of a ``Code:`` line's
    # own bytes, placed at the IP of the ``RIP:`` line printed just before it (show_ip() prints the
    # two together; a user-space RIP's bytes are the user's, not the kernel's).
    rip: int | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        interrupted = _RIP in line
        found = _frame_in_line(line, frames, interrupted)
        if interrupted:
            rip = _rip_address_or_none(line, found)
        at = line.find(_CODE)
        code = parse_code(line[at:]) if at >= 0 else None
        if code is not None:
            start = rip - (code.fault_index or 0) if rip is not None else None
            yield line, disassemble_code_line(code, start, syntax)
            rip = None
        elif found is not None and found.locations:
            yield f"{line} {found.annotation(strip.get(found.module, ''))}", None
        else:
            yield line, None


def _frame_in_line(line: str, frames: dict[_Role, DecodedFrame], interrupted: bool) -> DecodedFrame | None:
    if "+0x" not in line:
        return None
    for token in line.replace("(", " ").replace(")", " ").split():
        start = token.find(":") + 1 if token.startswith("00") else 0  # RIP: 0010:func+0x5/0x10
        found = frames.get((token[start:], interrupted))
        if found is not None:
            return found
    return None


def _code_lines(instructions: tuple[Instruction, ...]) -> Iterable[str]:
    yield "All code"
    yield "========"
    for insn in instructions:
        mark = "\t\t<-- trapping instruction" if insn.faulting else ""
        star = "*" if insn.faulting else ""
        yield f"  {insn.address:x}:{star}\t{insn.data.hex(' '):<24}\t{insn.text}{mark}"
