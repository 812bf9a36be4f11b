"""
kcrash.helpers.linux
====================

Linux kernel helpers, one module per kernel subsystem and named after its header, working on
:class:`~kcrash.types.object.Object`\\ s of a :class:`~kcrash.types.program.Program`:
:mod:`~kcrash.helpers.linux.list` (``include/linux/list.h``), :mod:`~kcrash.helpers.linux.printk`, ...

Each public helper documents its parameters with the C type it expects (``:param head: ``struct
list_head *```), what it returns, what it raises, and has one ``>>>`` example, as drgn's helpers do.
The examples assume a program opened from a dump, and ``task`` a ``struct task_struct *``::

    >>> from kcrash.analysis.target import open_target
    >>> prog = open_target("vmcore.elf")
    >>> from kcrash.helpers.linux.sched import find_task_or_none
    >>> task = find_task_or_none(prog, 1)

The outputs shown are those of the lab's 6.12 HUNG_ABBA dump, opened without vmlinux
(``tests/lab/test_helper_examples_lab.py`` runs every example on it;
``tests/unit/helpers/test_helper_docstrings.py`` checks that every example parses, calls functions
that exist with arguments their signatures accept, and needs no other name).
"""
