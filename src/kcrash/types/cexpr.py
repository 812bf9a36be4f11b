"""
kcrash.types.cexpr
==================

The C expression evaluator of ``kcrash p`` and ``kcrash whatis``: global identifiers (typed from
BTF, the shipped declarations, or a BTF ``FUNC`` for functions), enum constants, integer literals
(decimal, hex, octal, ``u``/``l`` suffixes, typed as C types them), character constants (``'a'``),
``.``/``->`` member access, ``[i]`` subscripts, unary ``* & - + ~ !``, casts, ``sizeof(type)`` and
``sizeof expr``, the binary operators ``* / % + - << >> < <= > >= == != & ^ | && ||`` with C's
precedence, the usual arithmetic conversions and pointer arithmetic scaled by the pointee size, and
crash's per-CPU suffix ``NAME:CPU`` (``runqueues:1`` is ``per_cpu(runqueues, 1)``). No
assignments, calls or ``?:``.

A global that BTF describes no type for (pahole emits ``VAR`` records for per-CPU variables only)
evaluates to a ``void`` object at its address: ``&NAME`` is a ``void *``, and a cast reads the
memory as that type (``(unsigned long)jiffies``, ``(struct foo)NAME``, as gdb treats a symbol of
unknown type); anything else raises an :class:`~kcrash.errors.ExpressionError` saying how to cast
it. A per-CPU variable without a CPU (``runqueues.nr_running``) is refused the same way; its
address (``&runqueues``) is its per-CPU offset. Which CPUs exist is not this module's business.

The parser turns the text into closures (evaluated afterwards), so ``&&``/``||`` short-circuit and
syntax errors name their column before any memory is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from kcrash.errors import ExpressionError, MissingDebugInfoError, SymbolNotFoundError, TypeLookupError
from kcrash.types.btf import BTF_KIND
from kcrash.types.declarations import parse_type_spec
from kcrash.types.model import Type, TypeKind, pointer_type, void_type
from kcrash.types.object import Object, cast, reinterpret
from kcrash.types.percpu import is_percpu_address, per_cpu_offset

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["SymbolObject", "binary", "cast_to", "evaluate", "is_percpu_symbol", "on_cpu", "require_usable",
           "symbol_object", "untyped_hint"]

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:0[xX][0-9a-fA-F]+|\d+)[uUlL]*)|(?P<id>[A-Za-z_]\w*)"
                    r"|(?P<chr>'(?:\\x[0-9a-fA-F]{1,2}|\\[0-7]{1,3}|\\.|[^'\\])')"
                    r"|(?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[.\[\]()*&+\-~!/%<>^|:]))")
_TYPE_WORDS = {"struct", "union", "enum", "const", "volatile", "unsigned", "signed", "int", "long", "short",
               "char", "void", "_Bool", "float", "double"}
# Binary operators by C precedence (higher binds tighter).
_BINARY = {"||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6, "<": 7, ">": 7, "<=": 7, ">=": 7,
           "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10}
_COMPARE = {"<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
_INTEGER = (TypeKind.INT, TypeKind.BOOL, TypeKind.ENUM)
_CPU_LIMIT = 1 << 16
# Parentheses, prefix operators and casts nest the parser's recursion; more than this is refused.
_MAX_NESTING = 200

Token = tuple[str, str, int]
Thunk = Callable[[], Object]


class SymbolObject(Object):
    """A global variable as :func:`evaluate` finds it: an :class:`Object` that remembers its
    symbol name, whether its type is known (``typed``) and whether it is a per-CPU variable still
    to be placed on a CPU (``percpu``: its address is the per-CPU offset)."""

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("name_", "percpu_", "typed_")

    name_: str
    percpu_: bool
    typed_: bool


def untyped_hint(name: str) -> str:
    """How to read global ``name`` whose type is unknown (the CLI's one-line advice)."""
    return f"cast it: (TYPE){name} or *(TYPE *)&{name}"


def _tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected {text[pos:].strip()[:10]!r} at column {pos + 1} of {text!r}")
        kind = m.lastgroup or "op"
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


# -- values and conversions ------------------------------------------------------------------------

def _kind(obj: Object) -> TypeKind:
    return obj.type_.strip_typedefs().kind


def _int_type(prog: Program, size: int, signed: bool) -> Type:
    name = {4: "int", 8: "long"}[size]
    return prog.type(name if signed else f"unsigned {name}")


def _literal(prog: Program, text: str) -> Object:
    digits = text.rstrip("uUlL")
    suffix = text[len(digits):].lower()
    value = int(digits, 8) if re.fullmatch(r"0\d+", digits) else int(digits, 0)
    # C11 6.4.4.1: the first of int, unsigned int (hex/octal only), long, unsigned long that holds it.
    candidates = [(4, True), (4, False), (8, True), (8, False)]
    if "u" in suffix:
        candidates = [c for c in candidates if not c[1]]
    elif digits[:1] != "0" or digits == "0":
        candidates = [c for c in candidates if c[1]] + [(8, False)]
    if "l" in suffix:
        candidates = [c for c in candidates if c[0] == 8]
    for size, signed in candidates:
        if value < 1 << (8 * size - signed):
            return Object(prog, _int_type(prog, size, signed), value)
    raise ExpressionError(f"integer constant {text} is too large")


def _char_value(body: str) -> int:
    # A character constant's value (C11 6.4.4.4; an int, of a signed char's value).
    if body.startswith("\\x"):
        value = int(body[2:], 16)
    elif body[:1] == "\\" and body[1:2].isdigit():
        value = int(body[1:], 8)
    elif body[:1] == "\\":
        value = ord({"n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a", "b": "\b", "f": "\f",
                     "v": "\v"}.get(body[1], body[1]))
    else:
        value = ord(body)
    if value > 0xFF:
        raise ExpressionError(f"character constant '{body}' does not fit a char")
    return value - 0x100 if value > 0x7F else value


def _decay(obj: Object) -> Object:
    # Arrays and functions in value context become pointers (C11 6.3.2.1).
    t = obj.type_.strip_typedefs()
    if t.kind is TypeKind.ARRAY and obj.address_ is not None:
        return Object(obj.prog_, pointer_type(t.type), obj.address_)
    if t.kind is TypeKind.FUNCTION and obj.address_ is not None:
        return obj.address_of_()
    return obj


def _promoted(obj: Object) -> tuple[int, bool]:
    # (size, signed) after the integer promotions (C11 6.3.1.1).
    t = obj.type_.strip_typedefs()
    size = t.sizeof()
    if size < 4:
        return 4, True
    return size, t.is_signed if t.kind is not TypeKind.BOOL else True


def _common(a: Object, b: Object) -> tuple[int, bool]:
    # The usual arithmetic conversions (C11 6.3.1.8) for integers of sizes 4 and 8.
    (sa, ga), (sb, gb) = _promoted(a), _promoted(b)
    if sa != sb:
        return (sa, ga) if sa > sb else (sb, gb)
    return sa, ga and gb


def _as(prog: Program, value: int, size: int, signed: bool) -> Object:
    return Object(prog, _int_type(prog, size, signed), value)


def _converted(obj: Object, size: int, signed: bool) -> int:
    value = int(obj) & ((1 << 8 * size) - 1)
    return value - (1 << 8 * size) if signed and value >> (8 * size - 1) else value


def _is_float(obj: Object) -> bool:
    return _kind(obj) is TypeKind.FLOAT


def _check_scalar(obj: Object, op: str) -> None:
    if _kind(obj) not in (*_INTEGER, TypeKind.POINTER, TypeKind.FLOAT):
        raise ExpressionError(f"invalid operand of {op!r}: {obj.type_.type_name()}")


def _truncating_div(a: int, b: int, op: str) -> int:
    if b == 0:
        raise ExpressionError(f"division by zero in {op!r}")
    q = abs(a) // abs(b)
    q = q if (a < 0) == (b < 0) else -q
    return q if op == "/" else a - b * q


def _integer_binary(prog: Program, op: str, a: Object, b: Object) -> Object:
    if op in ("<<", ">>"):
        size, signed = _promoted(a)
        left, count = _converted(a, size, signed), int(b)
        if not 0 <= count < 8 * size:
            raise ExpressionError(f"shift count {count} out of range for a {size}-byte operand")
        return _as(prog, left << count if op == "<<" else left >> count, size, signed)
    size, signed = _common(a, b)
    x, y = _converted(a, size, signed), _converted(b, size, signed)
    if op in _COMPARE:
        return _as(prog, int(_COMPARE[op](x, y)), 4, True)
    if op in ("/", "%"):
        return _as(prog, _truncating_div(x, y, op), size, signed)
    value = {"+": x + y, "-": x - y, "*": x * y, "&": x & y, "|": x | y, "^": x ^ y}[op]
    return _as(prog, value, size, signed)


def _float_binary(prog: Program, op: str, a: Object, b: Object) -> Object:
    x, y = float(a), float(b)
    if op in _COMPARE:
        return _as(prog, int(_COMPARE[op](x, y)), 4, True)
    if op == "/" and y == 0:
        raise ExpressionError("division by zero in '/'")
    if op not in ("+", "-", "*", "/"):
        raise ExpressionError(f"invalid operands of {op!r}: floating point")
    return Object(prog, prog.type("double"), {"+": x + y, "-": x - y, "*": x * y}[op] if op != "/" else x / y)


def _pointer_binary(prog: Program, op: str, a: Object, b: Object) -> Object:
    pa, pb = _kind(a) is TypeKind.POINTER, _kind(b) is TypeKind.POINTER
    if op in _COMPARE:
        return _as(prog, int(_COMPARE[op](int(a) & (1 << 64) - 1, int(b) & (1 << 64) - 1)), 4, True)
    if op == "+" and pa != pb:
        return a + int(b) if pa else b + int(a)
    if op == "-" and pa:
        return a - b if pb else a - int(b)
    raise ExpressionError(f"invalid operands of {op!r}: {a.type_.type_name()} and {b.type_.type_name()}")


def binary(prog: Program, op: str, left: Object, right: Object) -> Object:
    """``left op right`` with C semantics (not ``&&``/``||``, which short-circuit in the parser)."""
    a, b = _decay(left), _decay(right)
    _check_scalar(a, op)
    _check_scalar(b, op)
    if _kind(a) is TypeKind.POINTER or _kind(b) is TypeKind.POINTER:
        return _pointer_binary(prog, op, a, b)
    if _is_float(a) or _is_float(b):
        return _float_binary(prog, op, a, b)
    return _integer_binary(prog, op, a, b)


def _unary(prog: Program, op: str, operand: Object) -> Object:
    obj = _decay(operand)
    _check_scalar(obj, op)
    if op == "!":
        return _as(prog, int(not bool(obj)), 4, True)
    if _is_float(obj):
        if op == "~":
            raise ExpressionError("invalid operand of '~': floating point")
        return Object(prog, obj.type_, -float(obj) if op == "-" else float(obj))
    if _kind(obj) is TypeKind.POINTER:
        raise ExpressionError(f"invalid operand of {op!r}: {obj.type_.type_name()}")
    size, signed = _promoted(obj)
    value = _converted(obj, size, signed)
    return _as(prog, {"-": -value, "+": value, "~": ~value}[op], size, signed)


def cast_to(t: Type, obj: Object) -> Object:
    """``(t)obj``: scalars convert by value; a symbol of unknown type, or a cast to a structure,
    union or array, reads the object's memory as ``t`` (gdb's reading of such casts)."""
    target = t.strip_typedefs()
    if isinstance(obj, SymbolObject) and not obj.typed_:
        return reinterpret(t, obj)
    if target.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
        if obj.address_ is None:
            raise ExpressionError(f"cannot cast a value to {t.type_name()}: it has no address")
        return reinterpret(t, obj)
    if target.kind is TypeKind.VOID:
        return obj
    return cast(t, _decay(obj))


# -- globals ---------------------------------------------------------------------------------------

def _function_type_or_none(prog: Program, name: str) -> Type | None:
    # A function's prototype from its BTF FUNC record (vmlinux first, then the modules).
    for btf in (prog.btf, *prog.module_btf.values()):
        ids = btf.ids_named(name, (BTF_KIND["FUNC"],)) if btf is not None else []
        if ids:
            return btf.type_by_id(ids[0]) if btf is not None else None
    return None


def is_percpu_symbol(prog: Program, name: str, address: int) -> bool:
    """True if global ``name`` at ``address`` is a per-CPU variable: BTF lists it in a
    ``.data..percpu`` DATASEC (vmlinux or a module), else its address says so
    (:func:`~kcrash.types.percpu.is_percpu_address`)."""
    for btf in (prog.btf, *prog.module_btf.values()):
        if btf is not None and btf.is_percpu_variable(name):
            return True
    return is_percpu_address(prog, address)


def symbol_object(prog: Program, name: str) -> SymbolObject:
    """Global ``name`` as a :class:`SymbolObject` (SymbolNotFoundError if there is no such symbol)."""
    address = prog.symbol_address(name)
    typed = True
    try:
        t = prog.variable_type(name)
    except TypeLookupError:
        found = _function_type_or_none(prog, name)
        typed = found is not None
        t = found if found is not None else void_type()
    obj = SymbolObject(prog, t, address=address)
    for slot, value in (("name_", name), ("percpu_", is_percpu_symbol(prog, name, address)), ("typed_", typed)):
        object.__setattr__(obj, slot, value)
    return obj


def on_cpu(obj: SymbolObject, cpu: int) -> SymbolObject:
    """``NAME:CPU``: per-CPU variable ``obj`` placed in ``cpu``'s area (named ``NAME:CPU``)."""
    if not obj.percpu_:
        raise ExpressionError(f"{obj.name_} is not a per-CPU variable: {obj.name_}:{cpu} means nothing")
    address = (obj.address_ or 0) + per_cpu_offset(obj.prog_, cpu)
    placed = SymbolObject(obj.prog_, obj.type_, address=address)
    for slot, value in (("name_", f"{obj.name_}:{cpu}"), ("percpu_", False), ("typed_", obj.typed_)):
        object.__setattr__(placed, slot, value)
    return placed


def require_usable(obj: Object) -> Object:
    """``obj`` itself, unless it is a symbol that cannot be read as it stands: of unknown type
    (ExpressionError saying how to cast it) or per-CPU without a CPU (saying how to give one)."""
    if isinstance(obj, SymbolObject):
        if obj.percpu_:
            raise ExpressionError(f"{obj.name_} is a per-CPU variable: give a CPU ({obj.name_}:0) "
                                  f"or take its offset (&{obj.name_})")
        if not obj.typed_:
            raise ExpressionError(f"no type known for {obj.name_} at {obj.address_:#x} (BTF has variable "
                                  f"entries for per-CPU variables only): {untyped_hint(obj.name_)}")
    return obj


# -- the parser ------------------------------------------------------------------------------------

class _Parser:
    # Recursive descent (precedence climbing for binary operators) into closures.

    def __init__(self, prog: Program, text: str) -> None:
        self.prog, self.text = prog, text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in ops

    def expect(self, op: str) -> None:
        if not self.at(op):
            raise self.error(f"expected {op!r}")
        self.i += 1

    def error(self, message: str) -> ExpressionError:
        tok = self.peek()
        where = f"at column {tok[2] + 1}" if tok else "at the end"
        return ExpressionError(f"{message} {where} of {self.text!r}")

    def expression(self, min_prec: int = 1) -> Thunk:
        left = self.unary()
        while (tok := self.peek()) is not None and tok[0] == "op" and _BINARY.get(tok[1], 0) >= min_prec:
            self.i += 1
            right = self.expression(_BINARY[tok[1]] + 1)
            left = self._combine(tok[1], left, right)
        return left

    def _combine(self, op: str, left: Thunk, right: Thunk) -> Thunk:
        prog = self.prog
        if op == "&&":
            return lambda: _as(prog, int(bool(_value(left)) and bool(_value(right))), 4, True)
        if op == "||":
            return lambda: _as(prog, int(bool(_value(left)) or bool(_value(right))), 4, True)
        return lambda: binary(prog, op, _value(left), _value(right))

    def unary(self) -> Thunk:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise self.error(f"expression nested deeper than {_MAX_NESTING}")
        try:
            return self._unary()
        finally:
            self.depth -= 1

    def _unary(self) -> Thunk:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in ("*", "&", "-", "+", "~", "!"):
            self.i += 1
            return self._prefix(tok[1], self.unary())
        if tok is not None and tok == ("id", "sizeof", tok[2]):
            self.i += 1
            return self._sizeof()
        if self.at("(") and self._is_type_start(self.peek(1)):
            self.i += 1
            target = self._type_name()
            operand = self.unary()
            return lambda: cast_to(target, operand())
        return self.postfix(self.primary())

    def _prefix(self, op: str, operand: Thunk) -> Thunk:
        prog = self.prog
        if op == "*":
            return lambda: _decay(_value(operand)).deref_()
        if op == "&":
            return lambda: _address_of(operand())
        return lambda: _unary(prog, op, _value(operand))

    def _sizeof(self) -> Thunk:
        size_t = self.prog.type("unsigned long")
        if self.at("(") and self._is_type_start(self.peek(1)):
            self.i += 1
            t = self._type_name()
            return lambda: Object(self.prog, size_t, _size(t))
        operand = self.unary()
        return lambda: Object(self.prog, size_t, _size(require_usable(operand()).type_))

    def _is_type_start(self, tok: Token | None) -> bool:
        if tok is None or tok[0] != "id":
            return False
        if tok[1] in _TYPE_WORDS:
            return True
        return tok[1] not in self.prog and self.prog.find_type_or_none(tok[1]) is not None

    def _type_name(self) -> Type:
        start, depth = self.i, 0
        while (tok := self.peek()) is not None and not (tok[1] == ")" and depth == 0):
            depth += {"(": 1, ")": -1}.get(tok[1], 0) if tok[0] == "op" else 0
            self.i += 1
        if self.peek() is None:
            raise self.error("unclosed cast")
        words = " ".join(t[1] for t in self.tokens[start:self.i])
        self.i += 1
        try:
            return parse_type_spec(words).resolve(self.prog._lookup)
        except TypeLookupError as exc:
            raise ExpressionError(f"bad type name {words!r} in {self.text!r}: {exc}") from exc

    def primary(self) -> Thunk:
        tok = self.peek()
        if tok is None:
            raise self.error("expected an expression")
        self.i += 1
        if tok[0] == "num":
            value = _literal(self.prog, tok[1])
            return lambda: value
        if tok[0] == "chr":
            char = _as(self.prog, _char_value(tok[1][1:-1]), 4, True)
            return lambda: char
        if tok[0] == "id":
            return self._identifier(tok[1])
        if tok[1] == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        self.i -= 1
        raise self.error(f"unexpected {tok[1]!r}")

    def _identifier(self, name: str) -> Thunk:
        found = _identifier(self.prog, name)
        if self.at(":") and isinstance(found, SymbolObject):
            self.i += 1
            cpu_tok = self.peek()
            if cpu_tok is None or cpu_tok[0] != "num":
                raise self.error("expected a CPU number after ':'")
            self.i += 1
            cpu = int(cpu_tok[1].rstrip("uUlL"), 0)
            if cpu >= _CPU_LIMIT:
                raise ExpressionError(f"bad CPU number {cpu}")
            placed = on_cpu(found, cpu)
            return lambda: placed
        return lambda: found

    def postfix(self, base: Thunk) -> Thunk:
        obj = base
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in (".", "->", "["):
            self.i += 1
            if tok[1] == "[":
                index = self.expression()
                self.expect("]")
                obj = _subscript(obj, index)
                continue
            name = self.peek()
            if name is None or name[0] != "id":
                raise self.error("expected a member name")
            self.i += 1
            obj = _member(obj, name[1], tok[1] == "->")
        return obj


def _identifier(prog: Program, name: str) -> Object:
    try:
        return symbol_object(prog, name)
    except (SymbolNotFoundError, MissingDebugInfoError):
        try:
            return prog.constant(name)
        except TypeLookupError:
            raise ExpressionError(f"no symbol or enum constant {name!r}") from None


def _value(thunk: Thunk) -> Object:
    return require_usable(thunk())


def _address_of(obj: Object) -> Object:
    if isinstance(obj, SymbolObject) and not obj.typed_:
        if obj.address_ is None:
            raise ExpressionError(f"{obj.name_} has no address")
        return Object(obj.prog_, pointer_type(void_type()), obj.address_)
    return obj.address_of_()


def _size(t: Type) -> int:
    if not t.is_complete():
        raise ExpressionError(f"sizeof of incomplete type {t.type_name()}")
    return t.sizeof()


def _subscript(obj: Thunk, index: Thunk) -> Thunk:
    def run() -> Object:
        base, i = _value(obj), _value(index)
        if _kind(i) not in _INTEGER:
            raise ExpressionError(f"array subscript is {i.type_.type_name()}, not an integer")
        return base[int(i)]
    return run


def _member(obj: Thunk, name: str, arrow: bool) -> Thunk:
    def run() -> Object:
        base = _value(obj)
        kind = _kind(base)
        if arrow and kind is not TypeKind.POINTER:
            raise ExpressionError(f"'->' on {base.type_.type_name()}, which is not a pointer")
        return base.member_(name)
    return run


def evaluate(prog: Program, text: str, *, usable: bool = True) -> Object:
    """Evaluate C expression ``text`` in ``prog``.

    :param usable: refuse a result that cannot be read as it stands (see :func:`require_usable`);
        False returns such a :class:`SymbolObject` for the caller to present
    """
    parser = _Parser(prog, text)
    thunk = parser.expression()
    if parser.peek() is not None:
        raise parser.error("unexpected trailing input")
    result = thunk()
    return require_usable(result) if usable else result
