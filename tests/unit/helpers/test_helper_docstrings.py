"""Every public helper is documented the drgn way (issue 22, item 11): a ``:param name:`` for each
parameter, a ``:return:`` unless it returns None, and a ``>>>`` example whose code parses and calls
functions that exist, with arguments their signatures accept. Public methods of the helper classes
need ``:param``/``:return:`` too (their class carries the example). Checked statically here; the
examples run against a real dump, and print what they show, in ``tests/lab/test_helper_examples_lab.py``."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import textwrap
from collections.abc import Callable
from types import ModuleType

import pytest

import kcrash.types.program as program_module
from kcrash.types.program import Program
from support.helper_docs import program_members, public_helpers

_HIDDEN = {"self", "cls"}
#: what every example may use without defining it (see the kcrash.helpers.linux docstring)
_GIVEN = {"prog", "task"}


def _methods() -> list[tuple[str, Callable[..., object]]]:
    found: list[tuple[str, Callable[..., object]]] = []
    for _module, name, obj in public_helpers():
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if not attr.startswith("_") and inspect.isfunction(value):
                found.append((f"{name}.{attr}", value))
    return found


PUBLIC = public_helpers()
METHODS = _methods()


def _parameters(obj: object) -> list[str]:
    try:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
    except ValueError:
        return []
    return [name for name in signature.parameters if name not in _HIDDEN]


def _returns_value(obj: object) -> bool:
    annotation = inspect.signature(obj).return_annotation  # type: ignore[arg-type]
    return annotation not in (inspect.Signature.empty, None, "None")


def _missing(obj: object, doc: str, *, returns: bool) -> list[str]:
    missing = [f":param {name}:" for name in _parameters(obj)
               if not re.search(rf":param (?:[^:\n]+ )?{re.escape(name)}:", doc)]
    if returns and _returns_value(obj) and ":return:" not in doc:
        missing.append(":return:")
    return missing


def _examples(doc: str) -> list[str]:
    """The ``>>>`` statements of a docstring, each with its ``...`` continuation lines."""
    examples: list[list[str]] = []
    for line in textwrap.dedent(doc).splitlines():
        text = line.strip()
        if text.startswith(">>>"):
            examples.append([text[4:]])
        elif text.startswith("...") and examples:
            examples[-1].append(text[4:])
    return ["\n".join(example) for example in examples]


def test_there_are_helpers_to_check() -> None:
    names = {name for _module, name, _obj in PUBLIC}
    assert {"list_for_each_entry", "for_each_task", "StructLayout", "per_program"} <= names
    assert len(PUBLIC) > 150


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC, ids=[f"{m.__name__}.{n}" for m, n, _ in PUBLIC])
def test_helper_docstring_documents_parameters_return_and_example(module: ModuleType, name: str,
                                                                  obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    missing = _missing(obj, doc, returns=inspect.isfunction(obj))
    if not _examples(doc):
        missing.append(">>> example")
    assert not missing, f"{module.__name__}.{name}: docstring lacks {', '.join(missing)}"


@pytest.mark.parametrize(("name", "method"), METHODS, ids=[n for n, _ in METHODS])
def test_helper_method_docstring_documents_parameters_and_return(name: str, method: Callable[..., object]) -> None:
    doc = inspect.getdoc(method) or ""
    assert doc.strip(), f"{name} has no docstring"
    missing = _missing(method, doc, returns=True)
    assert not missing, f"{name}: docstring lacks {', '.join(missing)}"


def _bound_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.comprehension):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    return names


def _check_call(call: ast.Call, function: object, where: str, *, method: bool = False) -> None:
    """The call's positional and keyword arguments bind to ``function``'s signature (``method``:
    without its ``self``)."""
    if any(isinstance(arg, ast.Starred) for arg in call.args) or any(kw.arg is None for kw in call.keywords):
        return
    try:
        signature = inspect.signature(function)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    if method:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    try:
        signature.bind(*call.args, **{kw.arg: kw.value for kw in call.keywords if kw.arg})
    except TypeError as exc:
        pytest.fail(f"{where}: {ast.unparse(call)} does not fit {signature}: {exc}")


def _check_example_calls(tree: ast.AST, namespace: dict[str, object], bound: set[str], where: str) -> set[str]:
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):  # a decorator is a call too
            called |= {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            called.add(func.id)
            if func.id in namespace:
                _check_call(node, namespace[func.id], where)
            else:
                assert func.id in bound or hasattr(builtins, func.id), \
                    f"{where}: example calls {func.id}(), which the module does not have"
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "prog":
            assert hasattr(Program, func.attr), f"{where}: example calls prog.{func.attr}(), Program has none"
            if inspect.isfunction(attribute := inspect.getattr_static(Program, func.attr)):
                _check_call(node, attribute, where, method=True)
        elif isinstance(func, ast.Attribute):
            called.add(func.attr)
    return called


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC, ids=[f"{m.__name__}.{n}" for m, n, _ in PUBLIC])
def test_helper_examples_parse_and_call_what_exists(module: ModuleType, name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    examples = _examples(doc)
    if not examples:
        pytest.skip("no example (the docstring test fails for it)")
    trees = []
    for example in examples:
        try:
            trees.append(ast.parse(example))
        except SyntaxError as exc:
            pytest.fail(f"{module.__name__}.{name}: example does not parse: {example!r}: {exc}")
    namespace = vars(module) | {"prog": object()}
    bound = set().union(*(_bound_names(tree) for tree in trees))
    called = set().union(*(_check_example_calls(tree, namespace, bound, f"{module.__name__}.{name}")
                           for tree in trees))
    if inspect.isfunction(obj):
        assert name in called, f"{module.__name__}.{name}: no example calls {name}()"
    free = {node.id for tree in trees for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)} - bound - set(vars(module))
    free = {n for n in free if not hasattr(builtins, n)}
    assert free <= _GIVEN, f"{module.__name__}.{name}: example uses {sorted(free - _GIVEN)}, defined nowhere"


def test_example_checker_catches_wrong_calls() -> None:
    namespace: dict[str, object] = {"f": lambda prog, head: None}
    good = ast.parse("x = f(prog, h)")
    assert _check_example_calls(good, namespace, {"x"}, "good") == {"f"}
    with pytest.raises(pytest.fail.Exception, match="does not fit"):
        _check_example_calls(ast.parse("f(prog)"), namespace, set(), "bad")
    with pytest.raises(AssertionError, match="does not have"):
        _check_example_calls(ast.parse("g(prog)"), namespace, set(), "bad")
    with pytest.raises(AssertionError, match="Program has none"):
        _check_example_calls(ast.parse("prog.no_such_method()"), namespace, set(), "bad")
    assert _examples(">>> for x in f(prog, h):\n...     print(x)\n3\n") == ["for x in f(prog, h):\n    print(x)"]


PROGRAM = program_members()


@pytest.mark.parametrize(("name", "member"), PROGRAM, ids=[n for n, _ in PROGRAM])
def test_program_member_docstring_documents_parameters_return_and_example(name: str, member: object) -> None:
    doc = inspect.getdoc(member) or ""
    missing = _missing(member, doc, returns=True) if inspect.isfunction(member) else []
    examples = _examples(doc)
    if not examples:
        missing.append(">>> example")
    assert not missing, f"Program.{name}: docstring lacks {', '.join(missing)}"
    trees = [ast.parse(example) for example in examples]
    bound = set().union(*(_bound_names(tree) for tree in trees))
    for tree in trees:
        _check_example_calls(tree, dict(vars(program_module)), bound, f"Program.{name}")
    assert any(f"prog.{name}" in example for example in examples), f"Program.{name}: no example uses it"


DOCUMENTED = [(f"{m.__name__}.{n}", o) for m, n, o in PUBLIC] + METHODS + [(f"Program.{n}", o) for n, o in PROGRAM]


@pytest.mark.parametrize(("name", "obj"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_docstring_starts_with_one_summary_line(name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    summary = doc.split("\n\n")[0]
    assert summary.strip() and "\n" not in summary, f"{name}: the summary is not one line: {summary!r}"
