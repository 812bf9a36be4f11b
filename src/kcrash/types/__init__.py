"""
kcrash.types
============

Stage 4: types and typed objects. :class:`~kcrash.types.program.Program` joins memory, symbols and
types (vmlinux BTF, modules' split BTF, a declaration table for globals); :class:`~kcrash.types.object.Object`
is a typed value or reference with drgn-style ``_``-suffixed methods. :func:`open_program` builds a
program from dump files alone. DWARF types are not read yet.
"""

from kcrash.types.model import Enumerator, Member, Parameter, Qualifiers, Type, TypeKind
from kcrash.types.object import Object, cast, container_of, offsetof, reinterpret, sizeof
from kcrash.types.percpu import per_cpu, per_cpu_ptr
from kcrash.types.program import Program, open_program

__all__ = [
    "Enumerator",
    "Member",
    "Object",
    "Parameter",
    "Program",
    "Qualifiers",
    "Type",
    "TypeKind",
    "cast",
    "container_of",
    "offsetof",
    "open_program",
    "per_cpu",
    "per_cpu_ptr",
    "reinterpret",
    "sizeof",
]
