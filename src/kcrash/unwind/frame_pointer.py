"""
kcrash.unwind.frame_pointer
===========================

The fallbacks for when ORC data is missing or the walk fails. :data:`FRAME_POINTER_ENTRY` is the
kernel's ``orc_fp_entry`` (``arch/x86/kernel/unwind_orc.c``): assume a ``push %rbp; mov %rsp,%rbp``
frame (CFA = rbp + 16, return address at rbp + 8, caller's rbp at rbp); the kernel uses it for code
ORC does not know (BPF, generated trampolines) and stops trusting the trace. :func:`scan_stack`
collects every word on a stack that points into kernel text, as ``show_trace_log_lvl()`` does
(``arch/x86/kernel/dumpstack.c``); the kernel prints such guesses with ``?``.
"""

from __future__ import annotations

import struct

from kcrash.errors import FaultError
from kcrash.unwind.context import UnwindContext
from kcrash.unwind.frame import Frame
from kcrash.unwind.orc import ORC_REG_BP, ORC_REG_PREV_SP, ORC_REG_SP, OrcEntry

__all__ = ["FRAME_POINTER_ENTRY", "NULL_ENTRY", "SCAN_BUDGET", "scan_stack"]

#: ``orc_fp_entry``: a frame-pointer frame, used where no ORC entry exists
FRAME_POINTER_ENTRY = OrcEntry(sp_offset=16, bp_offset=-16, sp_reg=ORC_REG_BP, bp_reg=ORC_REG_PREV_SP,
                               type="call", signal=False)
#: ``null_orc_entry``: for ip 0 (a call through a NULL pointer), the return address is at sp
NULL_ENTRY = OrcEntry(sp_offset=8, bp_offset=0, sp_reg=ORC_REG_SP, bp_reg=0, type="call", signal=False)
_CHUNK = 4096
#: the most bytes :func:`scan_stack` looks at: the largest x86-64 kernel stack (16 KiB with KASAN
#: doubled) several times over; a range read from a damaged dump cannot make it longer
SCAN_BUDGET = 64 * 1024


def scan_stack(ctx: UnwindContext, start: int, end: int, *, limit: int = 64,
               budget: int = SCAN_BUDGET) -> list[Frame]:
    """Return unreliable ``"scan"`` frames for the kernel-text words in ``[start, end)``.

    ``start`` is rounded up to 8 bytes; unreadable pages are skipped. A frame's ``sp`` is the
    address after the word (where the stack pointer is once that return address is popped). At
    most ``budget`` bytes from ``start`` are looked at, readable or not, so a range spanning the
    address space (registers from a corrupted dump) costs at most ``budget / 4096`` reads.
    """
    frames: list[Frame] = []
    addr = (start + 7) & ~7
    end = min(end, addr + max(budget, 0), 1 << 64)
    while addr < end and len(frames) < limit:
        size = min(_CHUNK - (addr % _CHUNK), end - addr) & ~7
        if size <= 0:
            break
        try:
            data = ctx.read(addr, size)
        except FaultError:
            addr += size
            continue
        for i, (word,) in enumerate(struct.iter_unpack("<Q", data)):
            if ctx.is_kernel_text(word):
                frames.append(Frame(word, addr + 8 * i + 8, False, None, "scan"))
                if len(frames) >= limit:
                    break
        addr += size
    return frames
