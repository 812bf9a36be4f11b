"""
kcrash.dumps.write
==================

Dump writers. :mod:`~kcrash.dumps.write.stream` writes filtered kdump-compressed (header version 6,
plain or flattened, zlib/lzo/snappy/zstd/none, the shared zero page, threaded compression) and
``/proc/vmcore``-shaped ELF files page run by page run, crash-safely (:mod:`~kcrash.dumps.write.output`:
temporary name, rename when complete, "incomplete" flag on ENOSPC or interruption).
:mod:`~kcrash.dumps.write.kdump_compressed` and :mod:`~kcrash.dumps.write.elf_vmcore` build synthetic
test dumps (any header version, word size, split, corrupt variants) and the ``/proc/vmcore``-shaped copy
makedumpfile needs (the fake kernel the tests write with them is ``tests/support/synthetic.py``).
Deciding which pages to write is :mod:`kcrash.collect`'s job.
"""
