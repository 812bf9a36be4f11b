"""kcrash.helpers.linux.stack on real dumps (BUG on 6.12, 6.1 with KASLR, 5.10 with KASLR), with
no vmlinux: the ORC tables come from memory (vmlinux and each module's, the lab's test module among
them), every task unwinds to its end with reliable frames in kernel text, a sleeping task's first
frame is on its own stack, the CPU that oopsed shows lab.json's crash function, and a running
task unwinds from its CPU's registers. Frame-by-frame agreement with drgn is
tests/oracle/test_bt_frames_drgn.py; this file checks the helper's own contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.analysis.target import open_target
from kcrash.errors import MissingDebugInfoError
from kcrash.helpers.linux.sched import for_each_task
from kcrash.helpers.linux.stack import kernel_unwinder, stack_trace
from kcrash.types.percpu import per_cpu

pytestmark = pytest.mark.lab

CASES = [("6.12", False), ("6.1", True), ("5.10", True)]


@pytest.mark.parametrize(("kernel", "kaslr"), CASES)
def test_every_task_and_cpu(lab_crash: Callable[..., Path], kcrash_cache: Path, kernel: str, kaslr: bool) -> None:
    crash = lab_crash("BUG", kernel, kaslr)
    lab = json.loads((crash / "lab.json").read_text())
    with open_target(crash / "vmcore.kdump", kcrash_cache) as prog:
        unwinder = kernel_unwinder(prog)
        assert kernel_unwinder(prog) is unwinder  # one per program
        assert unwinder.orc_error is None and unwinder.modules_complete
        names = [t.name for t in unwinder.orc.tables]
        assert names[0] == "vmlinux" and lab["module"]["name"] in names
        ctx = unwinder.context()
        running = {int(per_cpu(prog, "runqueues", cpu).curr) for cpu in range(unwinder.num_cpus())}
        tasks = 0
        for task in for_each_task(prog):
            trace = stack_trace(prog, task)
            tasks += 1
            assert trace.truncated is None and trace.frames, int(task.pid)
            assert all(f.reliable and ctx.is_kernel_text(f.pc) for f in trace.frames), int(task.pid)
            if int(task) not in running:
                stack = unwinder.task_stack(task)
                assert stack.lo <= trace.frames[0].sp < stack.hi
        assert tasks > 50
        # the CPU that oopsed: its trace runs through the function the lab made crash
        crashed = [cpu for cpu in range(unwinder.num_cpus())
                   if any(prog.format_address(f.pc).startswith(lab["crash_function"] + "+")
                          for f in stack_trace(prog, cpu).frames)]
        assert len(crashed) == 1 and unwinder.num_cpus() == lab["smp"]
        curr = per_cpu(prog, "runqueues", crashed[0]).curr
        assert stack_trace(prog, curr).frames == stack_trace(prog, crashed[0]).frames
        with pytest.raises(MissingDebugInfoError, match="CPU 99"):
            stack_trace(prog, 99)
