"""Oracle: ``bt -f``/``-F``, exception frames, IRQ-stack marks and refused targets (issue 17) on lab
dumps, kcrash with NO vmlinux against drgn given the Debian -dbg vmlinux and the module .ko.

* ``bt -f``: the words of every frame of every task (and every CPU's active task) equal the stack
  memory drgn reads at the same addresses, and run without gaps from the frame's sp up to the next
  frame's return address or saved registers.
* ``bt -F``: every word kcrash names with a symbol agrees with drgn's ``prog.symbol()`` by the rules
  of ``test_kallsyms_drgn.py`` (exact, alias, nested label, gap past an ELF size) plus one more:
  **sparse** — kallsyms has no entry for the ELF data object drgn names (it lies between kcrash's
  symbol and the value), so kcrash, like the kernel's ``%pS``, names the preceding kallsyms symbol.
  A word kcrash does not name is no symbol for drgn either, or a slab object; every word kcrash calls
  a slab object is one for drgn's ``slab_object_info`` in the same cache, and the reverse.
* exception frames: the registers kcrash prints are the ``struct pt_regs`` drgn reads (typed, with its
  own DWARF layout) at the same address, and the registers of drgn's interrupted frame.
* ``--- <IRQ stack> ---``: each dump has a CPU stopped by the reboot IPI on its IRQ stack; the frames
  before the mark lie on the IRQ stack drgn computes (``hardirq_stack_ptr``), the one after on the
  task's stack.
* ``bt PID`` / ``bt ADDR``: a PID no task has and addresses that are no task_struct are refused with
  one line and a non-zero exit; a real task's address is accepted.
"""

from __future__ import annotations

import json
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.backtrace import (
    BacktraceOptions,
    cpu_backtrace_details,
    task_backtrace_detail,
)
from kcrash.analysis.target import open_target
from kcrash.cli import main
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.helpers.linux.sched import for_each_task
from kcrash.helpers.linux.stack import kernel_unwinder, stack_trace
from kcrash.model import ExceptionFrame, TaskTraceDetail
from kcrash.types.program import Program
from support.drgn_oracle import KDUMP_KCRASH, case_id, drgn_program, lab_info, skip_lost_slab
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [
    ("BUG", "6.1", True),
    ("BUG", "6.12", False),
    ("BUG", "5.10", True),
    ("SYSRQ", "7", False),
    ("HUNG_ABBA", "6.12", False),
    *KDUMP_KCRASH,
]
_SYMBOLIC = BacktraceOptions(words=True, symbolic=True)
# struct pt_regs members (drgn reads them by name from DWARF) -> kcrash's register names
_PT_REGS = {
    "r15": "r15",
    "r14": "r14",
    "r13": "r13",
    "r12": "r12",
    "bp": "rbp",
    "bx": "rbx",
    "r11": "r11",
    "r10": "r10",
    "r9": "r9",
    "r8": "r8",
    "ax": "rax",
    "cx": "rcx",
    "dx": "rdx",
    "si": "rsi",
    "di": "rdi",
    "orig_ax": "orig_rax",
    "ip": "rip",
    "cs": "cs",
    "flags": "eflags",
    "sp": "rsp",
    "ss": "ss",
}
#: THREAD_SIZE (= IRQ_STACK_SIZE) of x86-64 without KASAN: PAGE_SIZE << 2 (arch/x86/include/asm/page_64_types.h)
_THREAD_SIZE = 16384
# drgn's DWARF register names that differ from ours
_DRGN_REG = {"eflags": "rflags"}


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(
    request: pytest.FixtureRequest, lab_case: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path]
) -> tuple[Path, Any, dict[str, Any]]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    info = lab_info(out)
    vmlinux = lab_vmlinux_dbg(kernel)
    dprog = drgn_program(out, vmlinux, other_modules=True)
    return out, dprog, info


@pytest.fixture(scope="module")
def prog(crash: tuple[Path, Any, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    with open_target(crash[0] / "vmcore.elf", tmp_path_factory.mktemp("cache")) as target:
        yield target


@pytest.fixture(scope="module")
def details(prog: Program) -> list[TaskTraceDetail]:
    # bt -a -F, then bt -F of every other task
    start = time.perf_counter()
    out = list(cpu_backtrace_details(prog, _SYMBOLIC))
    active = {d.task.task for d in out}
    out += [
        task_backtrace_detail(prog, task, _SYMBOLIC)
        for task in for_each_task(prog, idle=True)
        if int(task) not in active
    ]
    words = sum(len(f.words) for d in out for f in d.frames)
    print(f"\nbt -F of {len(out)} tasks ({words} words): {time.perf_counter() - start:.2f}s")
    return out


def test_frame_words_are_the_stack_memory(details: list[TaskTraceDetail], crash: tuple[Path, Any, Any]) -> None:
    dprog = crash[1]
    checked = 0
    for entry in details:
        frames = entry.trace.frames
        for i, detail in enumerate(entry.frames):
            words = detail.words
            if not words:
                continue
            assert words[0].address == frames[i].sp, (entry.task.pid, i)
            assert [w.address for w in words] == list(range(words[0].address, words[-1].address + 8, 8))
            theirs = struct.unpack(f"<{len(words)}Q", dprog.read(words[0].address, 8 * len(words)))
            assert [w.value for w in words] == list(theirs), (entry.task.pid, i)
            checked += len(words)
            following = frames[i + 1] if i + 1 < len(frames) else None
            if (
                following is not None
                and following.kind in ("call", "scan")
                and detail.leaves is None
                and entry.frames[i + 1].stack == detail.stack
            ):
                # up to the next frame's return address, which is that frame's pc
                assert words[-1].address + 8 == following.sp - 8
                assert dprog.read_u64(following.sp - 8) == following.pc
    assert checked > 1000
    print(f"\n{checked} stack words equal drgn's reads")


def _drgn_symbol_or_none(dprog: Any, value: int) -> Any:
    try:
        return dprog.symbol(value)
    except LookupError:
        return None


def _classify(table: SymbolTable, dprog: Any, value: int) -> str:
    found = table.symbolize_or_none(value)
    theirs = _drgn_symbol_or_none(dprog, value)
    if found is None:
        return "none" if theirs is None else "unexplained: drgn names a word kcrash does not"
    ours = found[0]
    if theirs is not None and (theirs.name, theirs.address) == (ours.name, ours.address):
        return "exact"
    if theirs is not None and theirs.address == ours.address:
        return "alias" if theirs.name in {s.name for s in table.get_aliases(ours)} else "unexplained alias"
    elf = [s for s in dprog.symbols(ours.name) if s.address == ours.address]
    if theirs is not None and theirs.address < ours.address < theirs.address + theirs.size and elf:
        return "nested"
    if theirs is None and elf and value >= elf[0].address + max(s.size for s in elf):
        return "gap"
    if (
        theirs is not None
        and ours.address < theirs.address <= value
        and not any(s.address == theirs.address for s in table.iter_symbols_by_name(theirs.name))
    ):
        return "sparse"
    return "unexplained"


def _drgn_cache_or_none(dprog: Any, value: int) -> str | None:
    from drgn.helpers.linux.slab import slab_object_info

    try:
        info = slab_object_info(dprog, value)
    except (drgn.FaultError, ValueError, LookupError):
        return None
    return None if info is None else info.slab_cache.name.string_().decode()


def test_symbolic_words_agree_with_drgn(
    details: list[TaskTraceDetail], prog: Program, crash: tuple[Path, Any, Any]
) -> None:
    dprog = crash[1]
    table = prog.symbols
    assert isinstance(table, SymbolTable)
    words = {w.value: w for entry in details for f in entry.frames for w in f.words if w.value >= 1 << 63}
    kinds: Counter[str] = Counter()
    bad = []
    for value, word in words.items():
        kind = _classify(table, dprog, value)
        kinds[kind] += 1
        if kind.startswith("unexplained"):
            bad.append(f"{value:#x}: kcrash {word.symbol}, drgn {_drgn_symbol_or_none(dprog, value)}")
        if word.symbol is not None:
            assert word.symbol == table.format_address(value) and word.slab_cache is None
            continue
        theirs = _drgn_cache_or_none(dprog, value)
        kinds["slab" if theirs else "neither"] += 1
        if word.slab_cache != theirs:
            bad.append(f"{value:#x}: kcrash slab cache {word.slab_cache}, drgn {theirs}")
    print(f"\n{len(words)} distinct kernel-address words: {dict(kinds)}")
    assert not bad, "\n".join(bad[:20])
    assert kinds["exact"] > 10 and kinds["slab"] > 0


def _exceptions(details: list[TaskTraceDetail]) -> Iterator[tuple[TaskTraceDetail, int, ExceptionFrame]]:
    for entry in details:
        for detail in entry.frames:
            if detail.exception is not None:
                yield entry, detail.index, detail.exception


def _drgn_pt_regs(dprog: Any, address: int) -> dict[str, int]:
    regs = drgn.Object(dprog, "struct pt_regs", address=address)
    return {name: regs.member_(member).value_() for member, name in _PT_REGS.items()}


def test_exception_frames_are_drgns_pt_regs(details: list[TaskTraceDetail], crash: tuple[Path, Any, Any]) -> None:
    dprog = crash[1]
    found = list(_exceptions(details))
    # a kdump dump's CPUs start from the interrupted registers (the oops's pt_regs that crash_kexec()
    # saved, the NMI stop's): no exception frame is left to cross on their stacks
    assert found or crash[2].get("via") == "kdump", \
        "every QEMU lab dump has an exception frame (the oops, or the reboot IPI of the other CPU)"
    for entry, index, exception in found:
        ours = dict(exception.registers)
        assert exception.address is not None
        assert entry.trace.frames[index].pc == ours["rip"] and entry.trace.frames[index].sp == ours["rsp"]
        if exception.kind == "pt_regs":
            assert ours == _drgn_pt_regs(dprog, exception.address)
        else:
            iret = struct.unpack("<5Q", dprog.read(exception.address, 40))
            assert [ours[n] for n in ("rip", "cs", "eflags", "rsp", "ss")] == list(iret)
    # the user-mode registers where a task's kernel stack ends (system calls, user faults)
    users = [d.user_registers for d in details if d.user_registers is not None]
    for user in users:
        assert user.address is not None and user.user and user.kind == "pt_regs"
        assert dict(user.registers) == _drgn_pt_regs(dprog, user.address)
        assert dict(user.registers)["cs"] & 3 == 3
    assert users, "user processes sleep in system calls"
    print(f"\n{len(found)} exception frames and {len(users)} user-mode register sets equal the pt_regs drgn reads")


def test_crashed_threads_exception_frame_is_drgns_interrupted_frame(
    details: list[TaskTraceDetail], crash: tuple[Path, Any, Any], prog: Program
) -> None:
    dprog, info = crash[1], crash[2]
    if info["kind"] != "BUG":
        pytest.skip("only an oops leaves a pt_regs on the crashed thread's stack")
    thread = dprog.crashed_thread()
    entry = next(d for d in details if d.task.pid == thread.tid and d.task.active)
    if info.get("via") == "kdump":
        # crash_kexec(regs) saved the oops's pt_regs as the crashed CPU's NT_PRSTATUS: frame 0 is the
        # trap itself, with the registers drgn's frame 0 has
        first, raw = entry.trace.frames[0], stack_trace(prog, entry.task.cpu).frames[0]
        assert raw.regs is not None and raw.pc == first.pc
        ours = dict(raw.regs.values)
        theirs = thread.stack_trace()[0].registers()
        compared = {name: ours[name] for name in ours if _DRGN_REG.get(name, name) in theirs}
        assert compared == {name: theirs[_DRGN_REG.get(name, name)] for name in compared}
        assert {"rip", "rsp", "rax", "rbx", "r15"} <= compared.keys()
        assert first.pc == ours["rip"] and first.function == "kcrash_test_do_bug"
        return
    _, _, exception = next(e for e in _exceptions([entry]))
    ours = dict(exception.registers)
    frame = next(f for f in thread.stack_trace() if f.interrupted and f.pc == ours["rip"])
    theirs = frame.registers()
    compared = {name: ours[name] for name in ours if _DRGN_REG.get(name, name) in theirs}
    assert compared == {name: theirs[_DRGN_REG.get(name, name)] for name in compared}
    assert {"rip", "rsp", "rax", "rbx", "r15"} <= compared.keys()
    assert "kcrash_test_do_bug" in exception.rip_text


def _drgn_irq_stack(dprog: Any, cpu: int) -> tuple[int, int]:
    from drgn.helpers.linux.percpu import per_cpu

    try:
        top = per_cpu(dprog["pcpu_hot"], cpu).hardirq_stack_ptr.value_()
    except (KeyError, LookupError, AttributeError):
        top = per_cpu(dprog["hardirq_stack_ptr"], cpu).value_()
    return top + 8 - _THREAD_SIZE, top + 8


def test_irq_stack_is_marked(details: list[TaskTraceDetail], prog: Program, crash: tuple[Path, Any, Any]) -> None:
    dprog = crash[1]
    marked = 0
    for entry in details[: kernel_unwinder(prog).num_cpus()]:
        for detail in entry.frames:
            if detail.leaves is None:
                continue
            assert detail.leaves == "IRQ stack" and detail.stack == f"IRQ {entry.task.cpu}"
            lo, hi = _drgn_irq_stack(dprog, entry.task.cpu)
            before = [f for f in entry.trace.frames[: detail.index + 1]]
            assert all(lo <= f.sp <= hi for f in before), (entry.task.cpu, hex(lo), hex(hi))
            after = entry.trace.frames[detail.index + 1]
            task = drgn.Object(dprog, "struct task_struct *", entry.task.task)
            stack = task.stack.value_()
            assert stack <= after.sp < stack + _THREAD_SIZE
            assert entry.frames[detail.index + 1].stack == f"task {entry.task.pid}"
            marked += 1
    # (a kdump dump's other CPU is stopped by an NMI and saved with the interrupted registers)
    assert marked >= 1 or crash[2].get("via") == "kdump", "the CPU stopped by the reboot IPI runs on its IRQ stack"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_non_tasks_are_refused(crash: tuple[Path, Any, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from drgn.helpers.linux.pid import for_each_task as drgn_tasks

    dprog = crash[1]
    dump = str(crash[0] / "vmcore.kdump")
    tasks = list(drgn_tasks(dprog))
    pids = {t.pid.value_() for t in tasks}
    missing = max(pids) + 1000
    code, out, err = _run(capsys, "bt", dump, str(missing))
    assert code != 0 and out == "" and err.strip() == f"kcrash: error: no task with pid {missing}"
    task = tasks[-1]
    # inside a task_struct, a stack page, a global variable: readable, and none of them a task
    for address in (task.value_() + 0x40, task.stack.value_(), dprog["jiffies"].address_):
        code, out, err = _run(capsys, "bt", dump, f"{address:#x}")
        assert code != 0 and out == "", hex(address)
        assert err.count("\n") == 1 and f"{address:#x} is not a task" in err and "Traceback" not in err
    code, out, err = _run(capsys, "bt", dump, f"{task.value_():#x}", "--json")
    assert code == 0, err
    assert from_hex(json.loads(out))[0]["task"]["pid"] == task.pid.value_()


def _nested_label(dprog: Any, label: str, function: str) -> bool:
    # an assembler label inside a function (entry_SYSCALL_64_after_hwframe in entry_SYSCALL_64): the
    # kernel and kcrash name the label (kallsyms has it), drgn the enclosing ELF function
    outer = dprog.symbol(function)
    return any(outer.address < s.address < outer.address + outer.size for s in dprog.symbols(label))


def test_bt_lines_are_drgns_source_lines(
    crash: tuple[Path, Any, dict[str, Any]], lab_vmlinux_dbg: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # bt -l (crash's flag) with the -dbg vmlinux and the module's .ko: each kernel frame's
    # locations, innermost first, are drgn's frames at that pc (its inline frames, then the
    # physical one): the same functions and line numbers
    out, dprog, info = crash
    vmlinux = lab_vmlinux_dbg(info["kernel"]["flavour"])
    args = [
        "bt",
        "-l",
        str(out / "vmcore.elf"),
        "--debuginfo",
        str(vmlinux),
        *(["--debuginfo", info["module"]["path"]] if info["module"] else []),
        "--json",
    ]
    code, text, err = _run(capsys, *args)
    assert code == 0, err
    frames = from_hex(json.loads(text))[0]["trace"]["frames"]
    theirs: dict[int, list[tuple[str, int]]] = {}
    for frame in dprog.crashed_thread().stack_trace():
        try:
            _, line, _ = frame.source()
        except LookupError:
            continue
        theirs.setdefault(frame.pc, []).append((frame.name, line))
    compared = 0
    for frame in frames:
        if frame["source"] and frame["pc"] in theirs:
            ours = [(s["function"], s["line"]) for s in frame["source"]]
            assert [line for _, line in ours] == [line for _, line in theirs[frame["pc"]]], frame["text"]
            for (name, _), (their_name, _) in zip(ours, theirs[frame["pc"]], strict=True):
                assert name == their_name or _nested_label(dprog, name, their_name), frame["text"]
            compared += 1
    assert compared >= 5
    print(f"\nbt -l: {compared} frames' source lines equal drgn's")
