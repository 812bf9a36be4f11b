"""
kcrash.cli.vm
=============

``kcrash vm DUMP [PID|TASK...]``, crash's ``vm``: a task's ``mm_struct``, page directory, RSS and
total virtual size, then every VMA (its address, range, ``vm_flags`` in hex and by name, page
offset and file or ``[heap]``/``[stack]``/``[vdso]``/``[anon]``). The panic task by default.
Argument parsing and output only; the work is in :mod:`kcrash.analysis.vmas`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import DumpOrLive, Number
from kcrash.cli.targets import find_task
from kcrash.helpers.linux.sched import task_cpu

if TYPE_CHECKING:
    from kcrash.analysis.vmas import TaskVm

__all__ = ["print_vms", "vm"]

_KB_PER_PAGE = 4


@click.command("vm")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.argument("targets", metavar="[PID|TASK]...", nargs=-1, type=Number("pid_or_address"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def vm(path: str, targets: tuple[int, ...], as_json: bool) -> None:
    """The address space of the panic task (default) or of each PID or task address: mm, page
    directory, RSS, total size and every VMA with its flags and file."""
    # lazy: +25 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.vmas import task_vm

    with opened_target(path, orc=False) as prog:
        tasks = [find_task(prog, value) for value in (targets or (None,))]
        spaces = [(task_vm(prog, task), task_cpu(task)) for task in tasks]
    print_vms(spaces, as_json)


def print_vms(spaces: Sequence[tuple[TaskVm, int]], as_json: bool) -> None:
    """Print address spaces (each with the CPU of its task) as ``vm`` does: JSON, or one block each
    with a blank line between; also ``foreach vm``'s output."""
    if as_json:
        echo_json([dict(dataclasses.asdict(space), cpu=cpu) for space, cpu in spaces])
        return
    for i, (space, cpu) in enumerate(spaces):
        if i:
            click.echo()
        _print_vm(space, cpu)


def _print_vm(space: TaskVm, cpu: int) -> None:
    # lazy: +25 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.vmas import vma_perms

    click.echo(f"PID: {space.pid:<7} TASK: {space.task:016x}  CPU: {cpu:<3} COMMAND: \"{space.comm}\"")
    if not space.mm:
        click.echo("       MM               PGD          RSS    TOTAL_VM\n"
                   "       0                0            0k      0k      (kernel thread)")
        return
    rss = "?" if space.rss is None else f"{space.rss * _KB_PER_PAGE}k"
    click.echo("       MM               PGD          RSS    TOTAL_VM")
    click.echo(f"{space.mm:016x}  {space.pgd:016x}  {rss:>6}  {space.total_vm * _KB_PER_PAGE:>7}k")
    click.echo(f"{'VMA':>11}{'START':>18}{'END':>17} {'FLAGS':>8} PERM {'PGOFF':>8} FILE")
    for v in space.vmas:
        click.echo(f"{v.address:016x} {v.start:>16x} {v.end:>16x} {v.flags:>8x} {vma_perms(v.flags)} "
                   f"{v.pgoff:>8x} {v.backing}  ({'|'.join(v.flag_names)})")
    if space.truncated is not None:
        click.echo(f"(VMA walk stopped early: {space.truncated})")
