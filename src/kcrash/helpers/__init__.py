"""
kcrash.helpers
==============

Kernel knowledge on top of a :class:`~kcrash.types.program.Program`: :mod:`kcrash.helpers.linux`
(one module per kernel subsystem, named after its header), :mod:`kcrash.helpers.layout` (fast
multi-member reads) and :mod:`kcrash.helpers.memo` (per-program results). Every public helper
documents its parameters, return value and errors and has a ``>>>`` example, as drgn's helpers do
(see the :mod:`kcrash.helpers.linux` docstring for what the examples assume).
"""
