"""
kcrash.helpers.linux
====================

Linux kernel helpers, one module per kernel subsystem and named after its header, working on
:class:`~kcrash.types.object.Object`\\ s of a :class:`~kcrash.types.program.Program`:
:mod:`~kcrash.helpers.linux.list` (``include/linux/list.h``), :mod:`~kcrash.helpers.linux.printk`, ...
"""
