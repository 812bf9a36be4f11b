"""
kcrash.unwind.arch
==================

One unwinder per architecture: :mod:`kcrash.unwind.arch.x86_64` (ORC).
"""
