"""
kcrash.types.cexpr
==================

A small C expression evaluator for ``kcrash p EXPR``: global identifiers (and enum constants),
``.`` and ``->`` member access, ``[i]`` subscripts, unary ``*``, ``&`` and ``-``, casts
``(struct task_struct *)0xffff...``, integer literals (decimal, hex, octal, with ``u``/``l``
suffixes) and parentheses. Evaluation yields an :class:`~kcrash.types.object.Object`. No binary
arithmetic, function calls or assignments; anything else is an
:class:`~kcrash.errors.ExpressionError` naming the position.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kcrash.errors import ExpressionError, SymbolNotFoundError, TypeLookupError
from kcrash.types.declarations import parse_type_spec
from kcrash.types.object import Object, cast

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["evaluate"]

_TOKEN = re.compile(r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|\d+)[uUlL]*|(?P<id>[A-Za-z_]\w*)|(?P<op>->|[.\[\]()*&-]))")
_TYPE_WORDS = {"struct", "union", "enum", "const", "volatile", "unsigned", "signed", "int", "long", "short",
               "char", "void", "_Bool", "float", "double"}
_LONG_MAX = (1 << 63) - 1


def _tokenize(text: str) -> list[tuple[str, str, int]]:
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


class _Parser:
    # Recursive descent over the token list; evaluates as it parses.

    def __init__(self, prog: Program, text: str) -> None:
        self.prog, self.text = prog, text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def expect(self, op: str) -> None:
        tok = self.peek()
        if tok is None or tok[1] != op:
            raise self.error(f"expected {op!r}")
        self.i += 1

    def error(self, message: str) -> ExpressionError:
        tok = self.peek()
        where = f"at column {tok[2] + 1}" if tok else "at the end"
        return ExpressionError(f"{message} {where} of {self.text!r}")

    def unary(self) -> Object:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in ("*", "&", "-"):
            self.i += 1
            operand = self.unary()
            if tok[1] == "*":
                return operand.deref_()
            if tok[1] == "&":
                return operand.address_of_()
            return Object(self.prog, operand.type_, -int(operand))
        if tok is not None and tok[1] == "(" and self._is_type_start(self.peek(1)):
            self.i += 1
            target = self._type_name()
            return cast(target, self.unary())
        return self.postfix(self.primary())

    def _is_type_start(self, tok: tuple[str, str, int] | None) -> bool:
        if tok is None or tok[0] != "id":
            return False
        if tok[1] in _TYPE_WORDS:
            return True
        return tok[1] not in self.prog and self.prog.find_type_or_none(tok[1]) is not None

    def _type_name(self) -> str:
        start = self.i
        while self.peek() is not None and self.peek() != ("op", ")", self.tokens[self.i][2]):
            self.i += 1
        if self.peek() is None:
            raise self.error("unclosed cast")
        words = " ".join(t[1] for t in self.tokens[start:self.i])
        self.i += 1
        try:
            parse_type_spec(words)
            return words
        except TypeLookupError as exc:
            raise ExpressionError(f"bad type name {words!r} in {self.text!r}: {exc}") from exc

    def primary(self) -> Object:
        tok = self.peek()
        if tok is None:
            raise self.error("expected an expression")
        self.i += 1
        if tok[0] == "num":
            value = int(tok[1], 0) if not re.fullmatch(r"0\d+", tok[1]) else int(tok[1], 8)
            return Object(self.prog, self.prog.type("long" if value <= _LONG_MAX else "unsigned long"), value)
        if tok[0] == "id":
            return self._identifier(tok[1])
        if tok[1] == "(":
            inner = self.unary()
            self.expect(")")
            return inner
        self.i -= 1
        raise self.error(f"unexpected {tok[1]!r}")

    def _identifier(self, name: str) -> Object:
        try:
            return self.prog[name]
        except SymbolNotFoundError:
            try:
                return self.prog.constant(name)
            except TypeLookupError:
                raise ExpressionError(f"no symbol or enum constant {name!r}") from None

    def postfix(self, obj: Object) -> Object:
        while (tok := self.peek()) is not None and tok[1] in (".", "->", "["):
            self.i += 1
            if tok[1] == "[":
                index = self.unary()
                self.expect("]")
                obj = obj[int(index)]
                continue
            name = self.peek()
            if name is None or name[0] != "id":
                raise self.error("expected a member name")
            self.i += 1
            if tok[1] == "->" and obj.type_.strip_typedefs().kind.value != "pointer":
                raise ExpressionError(f"'->' on {obj.type_.type_name()}, which is not a pointer")
            obj = obj.member_(name[1])
        return obj


def evaluate(prog: Program, text: str) -> Object:
    """Evaluate C expression ``text`` in ``prog``."""
    parser = _Parser(prog, text)
    result = parser.unary()
    if parser.peek() is not None:
        raise parser.error("unexpected trailing input")
    return result
