"""
kcrash.analysis.sources
=======================

Source-level annotation of the report when debug information is given: each backtrace frame's
file, line and inlined-call chain (:class:`~kcrash.debuginfo.symbolizer.KernelSymbolizer`, return
addresses looked up one byte back like ``addr2line``), and the source lines around the faulting IP
when the file can be found (as recorded, under the unit's compilation directory, or under a source
directory given by the caller, where a recorded path's trailing components are looked for as gdb's
``directory`` search does). Without debug information for the IP, the file and line come from the
log's oops line (``kernel BUG at FILE:LINE!``, ``WARNING: … at FILE:LINE``) when its ``RIP:`` is the
crashing context's IP. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from kcrash import model
from kcrash.debuginfo.finder import find_debuginfo, find_module_debuginfo
from kcrash.debuginfo.symbolizer import KernelSymbolizer, SourceLocation, open_symbolizers
from kcrash.debuginfo.symbols import lookup_address
from kcrash.errors import DebugInfoMismatchError, KcrashError, MissingDebugInfoError
from kcrash.helpers.linux.module import for_each_module, module_base, module_name
from kcrash.oops.details import parse_bug_location, parse_details, parse_frame
from kcrash.types.program import Program

__all__ = [
    "SNIPPET_NOTE",
    "annotate_context",
    "annotate_trace",
    "covers",
    "find_snippet",
    "log_source_line_or_none",
    "open_kernel_symbolizer",
    "source_snippet_or_none",
]

#: how the reason a snippet asked for (``--source-dir``) is missing starts, in the context's section note
SNIPPET_NOTE = "no source snippet"

_SNIPPET_CONTEXT = 5
_MAX_SOURCE = 4 << 20


def _lines(locations: Sequence[SourceLocation]) -> tuple[model.SourceLine, ...]:
    return tuple(
        model.SourceLine(loc.function, loc.file, loc.line, loc.inlined)
        for loc in locations
        if loc.file != "??" or loc.function != "??"
    )


def _lookup_pc(frame: model.Frame) -> int:
    # "call"/"scan" frames hold return addresses; "regs"/"partial" ones the interrupted IP.
    return lookup_address(frame.pc, interrupted=frame.kind not in ("call", "scan"))


def covers(symbolizer: KernelSymbolizer, address: int) -> bool:
    """Whether debug information was given for the code at ``address`` (a module's text, or
    vmlinux's at its KASLR offset); other addresses would be named after unrelated functions."""
    ranges = [r for m in symbolizer.modules.values() for r in m.text_ranges()]
    if symbolizer.vmlinux is not None:
        shift = symbolizer.kaslr_offset
        ranges += [(lo + shift, hi + shift) for lo, hi in symbolizer.vmlinux.text_ranges()]
    return any(lo <= address < hi for lo, hi in ranges)


def annotate_trace(trace: model.Trace, symbolizer: KernelSymbolizer) -> model.Trace:
    """``trace`` with the source locations (innermost first) of the frames debug information
    covers filled in."""
    wanted = [f for f in trace.frames if covers(symbolizer, _lookup_pc(f))]
    try:
        found = dict(
            zip((f.index for f in wanted), symbolizer.symbolize_many([_lookup_pc(f) for f in wanted]), strict=True)
        )
    except KcrashError:
        return trace
    frames = tuple(
        dataclasses.replace(f, source=_lines(found[f.index])) if f.index in found else f for f in trace.frames
    )
    return dataclasses.replace(trace, frames=frames)


def annotate_disassembly(dis: model.Disassembly, symbolizer: KernelSymbolizer) -> model.Disassembly:
    """``dis`` with the source locations (innermost first) of the instructions debug information
    covers filled in (``objdump -dl``'s lines)."""
    wanted = [i.address for i in dis.instructions if covers(symbolizer, i.address)]
    try:
        found = dict(zip(wanted, symbolizer.symbolize_many(wanted), strict=True))
    except KcrashError:
        return dis
    insns = tuple(
        dataclasses.replace(i, source=_lines(found[i.address])) if i.address in found else i for i in dis.instructions
    )
    return dataclasses.replace(dis, instructions=insns)


def _candidates(name: str, roots: Sequence[str]) -> list[Path]:
    # The path as recorded when absolute, then under each root its trailing components, longest first
    # (a module built in /tmp/build+1/ is found as DIR/kcrash_test.c; drivers/x/y.c as DIR/drivers/x/y.c).
    parts = [p for p in Path(name).parts if p not in ("/", "..", ".")]
    found = [Path(name)] if Path(name).is_absolute() else []
    return found + [Path(root).joinpath(*parts[i:]) for root in roots if root for i in range(len(parts))]


def _find_file(name: str, roots: Sequence[str]) -> Path | None:
    return next((p for p in _candidates(name, roots) if p.is_file() and p.stat().st_size <= _MAX_SOURCE), None)


def source_snippet_or_none(
    line: model.SourceLine, roots: Sequence[str], context: int = _SNIPPET_CONTEXT
) -> model.SourceSnippet | None:
    """Up to ``context`` lines either side of ``line`` from its file, if it can be found."""
    path = _find_file(line.file, roots) if line.line > 0 else None
    if path is None:
        return None
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    first = max(1, line.line - context)
    return model.SourceSnippet(str(path), line.line, first, tuple(text[first - 1 : line.line + context]))


def annotate_context(
    ctx: model.CrashingContext, symbolizer: KernelSymbolizer, source_dirs: Sequence[str] = ()
) -> model.CrashingContext:
    """``ctx`` with the IP's source locations and, when the file is found, a source snippet."""
    if not covers(symbolizer, ctx.ip):
        return ctx
    try:
        locations = _lines(symbolizer.symbolize(ctx.ip))
    except KcrashError:
        return ctx
    roots = [*source_dirs, *_roots(symbolizer)]
    snippet = source_snippet_or_none(locations[0], roots) if locations else None
    return dataclasses.replace(ctx, ip_source=locations, snippet=snippet)


def log_source_line_or_none(ctx: model.CrashingContext, oops: model.OopsHeader | None) -> model.SourceLine | None:
    """The ``FILE:LINE`` of the log's oops line (``kernel BUG at``/``WARNING: … at``) when the oops
    header's ``RIP:`` is ``ctx``'s IP (the same function and offset), else ``None``."""
    if oops is None or not oops.lines:
        return None
    texts = [line.text for line in oops.lines]
    where = parse_bug_location(texts[0])
    rip, ip = parse_details(texts).rip, parse_frame(ctx.ip_text)
    if where is None or rip is None or ip is None or (rip.function, rip.offset) != (ip.function, ip.offset):
        return None
    return model.SourceLine(ip.function, where[0], where[1], False)


def find_snippet(
    ctx: model.CrashingContext, oops: model.OopsHeader | None, roots: Sequence[str]
) -> tuple[model.SourceSnippet | None, str]:
    """The source snippet of ``ctx``'s IP, its file found under ``roots`` (its name from the debug
    information's line table, else from the log's oops line), or ``None`` and why not."""
    line = ctx.ip_source[0] if ctx.ip_source else log_source_line_or_none(ctx, oops)
    if line is None or line.line <= 0:
        return None, (
            f"{SNIPPET_NOTE}: neither debug information (--debuginfo) nor the log's oops line "
            f"names the source file of {ctx.ip_text or hex(ctx.ip)}"
        )
    snippet = source_snippet_or_none(line, roots)
    if snippet is None:
        where = ", ".join(roots) or "no directory"
        return None, f"{SNIPPET_NOTE}: {Path(line.file).name} ({line.file}:{line.line}) not found under {where}"
    return snippet, ""


def _roots(symbolizer: KernelSymbolizer) -> list[str]:
    objects = [*symbolizer.modules.values(), *([symbolizer.vmlinux] if symbolizer.vmlinux else [])]
    return [root for root in (o.source_root_or_none() for o in objects) if root]


def open_kernel_symbolizer(
    prog: Program, paths: Sequence[Path], *, force: bool = False, cache_dir: Path | None = None
) -> KernelSymbolizer:
    """A symbolizer for the kernel of ``prog`` from debug files found in ``paths`` (files or
    directories) and the standard Debian locations: the vmlinux of this build (matched by GNU
    build-id; another build is refused unless ``force``) and the debug ``.ko`` of every loaded module
    that has one, placed at the module's load address in the dump.

    :raises MissingDebugInfoError: no matching vmlinux and no module debug file was found.
    """
    info = prog.vmcoreinfo
    release = info.osrelease if info is not None else None
    build_id = info.build_id if info is not None else None
    try:
        vmlinux: Path | None = find_debuginfo(release, build_id, paths, force)
    except MissingDebugInfoError as exc:
        if isinstance(exc, DebugInfoMismatchError) or not any(_is_module_file(p) for p in paths):
            raise
        vmlinux = None  # only module debug files were given
    placed: dict[str, tuple[Path, int]] = {}
    for mod in for_each_module(prog):
        name = module_name(mod)
        ko = find_module_debuginfo(name, release, paths)
        if ko is not None:
            placed[name] = (ko, module_base(mod))
    return open_symbolizers(vmlinux, placed, cache_dir=cache_dir, kaslr_offset=prog.kaslr_offset or 0)


def _is_module_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".ko", ".ko.debug"))
