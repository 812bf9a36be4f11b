"""
kcrash.helpers.layout
=====================

Reading a few members of many structures of one type: :class:`StructLayout` finds where each
member is (byte offset, size, signedness) once per type, and :meth:`StructLayout.read` gets one
object's members with a single read of the bytes they span, decoded as
:class:`~kcrash.types.object.Object` decodes them (little-endian integers, sign from the type, C
strings up to the first NUL). A helper walking hundreds of ``struct task_struct`` or ``struct
kmem_cache`` uses it instead of one member lookup and one memory read per member and object. When
the span is unreadable, each member is read on its own, so a fault names the member's address, as
member access does. Bitfields are not supported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from kcrash.errors import ExpressionError, FaultError, TypeLookupError
from kcrash.types.model import Type
from kcrash.types.object import Object

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["StructBytes", "StructLayout"]

# one member: (byte offset, size, signed, type)
_Field = tuple[int, int, bool, Type]


class StructLayout:
    """Where some members of one structure type are: byte offset, size and signedness, found once.

    :param type: the structure type (``prog.type("struct task_struct")``)
    :param members: member paths (``"pid"``, ``"nr_slabs.counter"``, ``"node[1]"``), each its own
        name (a single path may be a plain string); or a mapping from a name to a path or to
        candidate paths, the first one the type has being used (``{"state": ("__state", "state")}``)
    :raises TypeLookupError: if the type has none of a name's candidate paths
    :raises ExpressionError: if a member is a bitfield
    :raises ValueError: if no member is given

    >>> layout = StructLayout(prog.type("struct task_struct"), {"pid": "pid", "state": ("__state", "state")})
    >>> row = layout.read(prog, int(prog["init_task"].address_of_()))
    >>> row.value("pid"), row.value("state")
    (0, 0)
    """

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_fields", "_size", "_start", "type")

    def __init__(self, type: Type, members: Mapping[str, str | tuple[str, ...]] | Iterable[str] | str) -> None:
        if isinstance(members, str):
            members = (members,)
        named = dict(members.items()) if isinstance(members, Mapping) else {path: path for path in members}
        self.type = type
        self._fields = {name: _first_field(type, (paths,) if isinstance(paths, str) else paths)
                        for name, paths in named.items()}
        if not self._fields:
            raise ValueError("a layout needs at least one member")
        self._start = min(field[0] for field in self._fields.values())
        self._size = max(field[0] + field[1] for field in self._fields.values()) - self._start

    def offsetof(self, name: str) -> int:
        """Return the byte offset of a member from the start of the structure.

        :param name: the member's name in this layout
        :return: the offset in bytes
        :raises KeyError: if the layout has no member ``name``
        """
        return self._fields[name][0]

    def read(self, prog: Program, address: int) -> StructBytes:
        """Return the members of the structure at ``address``, read with one read of the bytes they span.

        :param prog: the program to read from
        :param address: the structure's address
        :return: the members, decoded on access
        """
        return StructBytes(self, prog, address)

    def read_value(self, prog: Program, address: int, name: str) -> int:
        """Return one member of the structure at ``address`` as an integer, reading that member only.

        :param prog: the program to read from
        :param address: the structure's address
        :param name: the member's name in this layout
        :return: the member's value (sign from its type)
        :raises FaultError: if the member cannot be read
        """
        offset, size, signed, _ = self._fields[name]
        return int.from_bytes(prog.read(address + offset, size), "little", signed=signed)


class StructBytes:
    """The members of one structure, as :meth:`StructLayout.read` read them.

    If the span could not be read at once, each member is read on access, so a fault names the
    member's address.

    :param layout: the layout the members are in
    :param prog: the program to read from
    :param address: the structure's address

    >>> layout = StructLayout(prog.type("struct task_struct"), ("pid", "comm"))
    >>> row = layout.read(prog, int(prog["init_task"].address_of_()))
    >>> row.string("comm")
    b'swapper/0'
    """

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_buf", "_layout", "_prog", "address")

    def __init__(self, layout: StructLayout, prog: Program, address: int) -> None:
        self._layout, self._prog, self.address = layout, prog, address
        try:
            self._buf: bytes | None = prog.read(address + layout._start, layout._size)
        except FaultError:
            self._buf = None  # member by member, on access

    def raw(self, name: str) -> bytes:
        """Return the bytes of a member.

        :param name: the member's name in the layout
        :return: its bytes
        :raises FaultError: if the member cannot be read
        """
        offset, size, _, _ = self._layout._fields[name]
        if self._buf is None:
            return self._prog.read(self.address + offset, size)
        start = offset - self._layout._start
        return self._buf[start:start + size]

    def value(self, name: str) -> int:
        """Return a member as an integer (an integer, enum, bool or pointer member), little-endian, sign from its type.

        :param name: the member's name in the layout
        :return: its value
        :raises FaultError: if the member cannot be read
        """
        return int.from_bytes(self.raw(name), "little", signed=self._layout._fields[name][2])

    def string(self, name: str) -> bytes:
        """Return the C string in a char array member (up to its first NUL).

        :param name: the member's name in the layout
        :return: the string's bytes
        :raises FaultError: if the member cannot be read
        """
        return self.raw(name).split(b"\0", 1)[0]

    def object(self, name: str) -> Object:
        """Return a member as a value :class:`~kcrash.types.object.Object`, for what the other accessors do not decode.

        Such as the string a ``char *`` member points to.

        :param name: the member's name in the layout
        :return: the member's value object
        :raises FaultError: if the member cannot be read
        """
        return Object(self._prog, self._layout._fields[name][3], self.raw(name))


def _first_field(type: Type, paths: tuple[str, ...]) -> _Field:
    for path in paths[:-1]:
        try:
            return _field(type, path)
        except TypeLookupError:
            continue
    return _field(type, paths[-1])


def _field(type: Type, path: str) -> _Field:
    # Type.walk_path, as (byte offset, size, signed, type); bit-fields are not read this way.
    try:
        bits, t, field_bits = type.walk_path(path)
    except TypeError as exc:
        raise ExpressionError(str(exc)) from exc
    if field_bits or bits % 8:
        raise ExpressionError(f"{path} is a bitfield")
    return bits // 8, t.sizeof(), t.strip_typedefs().is_signed, t
