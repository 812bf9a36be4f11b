"""
kcrash.types.declarations
=========================

Kernel BTF describes types but not (most) global variables, so kcrash ships C declarations of the
globals its helpers read (:data:`KERNEL_DECLARATIONS`), parsed by a tiny declaration parser. The
same parser reads type names (``struct task_struct *``, ``unsigned long [4]``, ``const char *``)
into a :class:`TypeSpec` that a program resolves against its types later, so a declaration of a
type this kernel lacks costs nothing until used. Declarators are limited to pointers, qualifiers
and array suffixes: no function pointers, no bitfields, no initialisers.

Why each global is here (all probed by name, never by kernel version):

- ``init_task``, ``init_mm``, ``init_pid_ns``, ``init_uts_ns``: roots of the task list, memory, pid
  and utsname walks.
- ``modules``: the loaded-module list (``struct module.list``).
- ``prb`` (v5.10+, lockless printk ring buffer) and ``log_buf``/``log_buf_len``/``log_first_idx``/
  ``log_next_idx`` (older ring buffer): the kernel log.
- ``jiffies``, ``jiffies_64``: time at the crash.
- ``__per_cpu_offset``, ``nr_cpu_ids``, ``__cpu_online_mask``, ``__cpu_possible_mask``,
  ``__cpu_present_mask``, ``__cpu_active_mask``: per-CPU data and which CPUs exist.
- Per-CPU (addresses are offsets into each CPU's area, see :func:`~kcrash.types.percpu.per_cpu_ptr`):
  ``runqueues``, ``current_task`` and ``cpu_number`` (until v6.2; then in ``struct pcpu_hot pcpu_hot``,
  commit e57ef2ed97c1, itself folded back in v6.15), ``hardirq_stack_ptr``, ``irq_stack_backing_store``;
  on arm64 ``__entry_task`` (``current`` as ``sp_el0`` is reloaded from it).
  When BTF has a VAR for them (DATASEC ``.data..percpu``), the BTF type wins.
- ``tainted_mask``, ``panic_cpu``, ``panic_on_oops``, ``crashing_cpu``, ``oops_in_progress``: panic state.
- ``saved_command_line``, ``linux_banner``: kernel command line and version banner.
- ``slab_caches``: the list of ``struct kmem_cache``.
- ``page_offset_base``, ``vmemmap_base``, ``vmalloc_base``, ``phys_base``: x86-64 memory layout (KASLR).
- ``_totalram_pages``, ``node_data``, ``mem_section``: memory accounting and sparsemem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from kcrash.errors import TypeLookupError
from kcrash.types.model import Qualifiers, Type, TypeKind, array_type, pointer_type, void_type

__all__ = [
    "KERNEL_DECLARATIONS",
    "TypeSpec",
    "canonical_base_name",
    "parse_declarations",
    "parse_type_spec",
]

KERNEL_DECLARATIONS = """
struct task_struct init_task;
struct mm_struct init_mm;
struct pid_namespace init_pid_ns;
struct uts_namespace init_uts_ns;
struct list_head modules;
struct printk_ringbuffer *prb;
char *log_buf;
u32 log_buf_len;
u32 log_first_idx;
u32 log_next_idx;
volatile unsigned long jiffies;
u64 jiffies_64;
unsigned long __per_cpu_offset[];
unsigned int nr_cpu_ids;
struct cpumask __cpu_online_mask;
struct cpumask __cpu_possible_mask;
struct cpumask __cpu_present_mask;
struct cpumask __cpu_active_mask;
struct rq runqueues;
struct task_struct *current_task;
struct task_struct *__entry_task;
struct pcpu_hot pcpu_hot;
int cpu_number;
struct irq_stack *hardirq_stack_ptr;
struct irq_stack irq_stack_backing_store;
struct cea_exception_stacks *cea_exception_stacks;
unsigned long tainted_mask;
atomic_t panic_cpu;
int panic_on_oops;
int crashing_cpu;
int oops_in_progress;
char *saved_command_line;
const char linux_banner[];
struct list_head slab_caches;
unsigned long page_offset_base;
unsigned long vmemmap_base;
unsigned long vmalloc_base;
unsigned long phys_base;
atomic_long_t _totalram_pages;
struct pglist_data *node_data[];
struct mem_section **mem_section;
"""

_QUALIFIER_WORDS = {"const": Qualifiers.CONST, "volatile": Qualifiers.VOLATILE,
                    "restrict": Qualifiers.RESTRICT, "__restrict": Qualifiers.RESTRICT}
_INT_WORDS = {"signed", "unsigned", "short", "long", "int", "char"}
_TOKEN = re.compile(r"\s*(?:([A-Za-z_]\w*)|(\d+|0[xX][0-9a-fA-F]+)|(\S))")


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A parsed C type name: a base (``("struct", "task_struct")``, ``("name", "u64")``), its
    qualifiers, then declarator steps applied inside-out: ``"*"`` with the pointer's qualifiers,
    or ``"[N]"`` (``"[]"`` when the length is unknown)."""

    keyword: str
    name: str
    qualifiers: Qualifiers
    steps: tuple[tuple[str, Qualifiers], ...]

    def resolve(self, lookup: Callable[[str, TypeKind], Type]) -> Type:
        """Build the type; ``lookup(name, kind)`` finds named base types (raises TypeLookupError)."""
        t = self._base(lookup).qualified(self.qualifiers)
        for step, quals in self.steps:
            if step == "*":
                t = pointer_type(t).qualified(quals)
            else:
                t = array_type(t, int(step[1:-1], 0) if step != "[]" else None)
        return t

    def _base(self, lookup: Callable[[str, TypeKind], Type]) -> Type:
        if self.keyword in ("struct", "union", "enum"):
            return lookup(self.name, TypeKind(self.keyword))
        if self.name == "void":
            return void_type()
        if self.name in ("_Bool", "bool"):
            return _first(lookup, ("_Bool", "bool"), TypeKind.BOOL)
        if self.keyword == "int":
            return lookup(self.name, TypeKind.INT)
        if self.name in ("float", "double", "long double"):
            return lookup(self.name, TypeKind.FLOAT)
        return lookup(self.name, TypeKind.TYPEDEF)

    def __str__(self) -> str:
        base = f"{self.keyword} {self.name}" if self.keyword in ("struct", "union", "enum") else self.name
        words = [w for flag, w in ((Qualifiers.CONST, "const"), (Qualifiers.VOLATILE, "volatile"))
                 if flag in self.qualifiers]
        stars = "".join(" *" for step, _ in self.steps if step == "*")
        arrays = "".join(reversed([step for step, _ in self.steps if step != "*"]))
        return " ".join([*words, base]) + stars + (f" {arrays}" if arrays and not stars else arrays)


def _first(lookup: Callable[[str, TypeKind], Type], names: tuple[str, ...], kind: TypeKind) -> Type:
    for name in names[:-1]:
        try:
            return lookup(name, kind)
        except TypeLookupError:
            continue
    return lookup(names[-1], kind)


def canonical_base_name(words: list[str]) -> str:
    """GCC's spelling of an integer type (BTF and DWARF use it): ``unsigned long`` → ``long
    unsigned int``, ``long long`` → ``long long int``, ``signed char`` stays."""
    counts = {w: words.count(w) for w in _INT_WORDS}
    if counts["char"]:
        return "unsigned char" if counts["unsigned"] else "signed char" if counts["signed"] else "char"
    core = "short int" if counts["short"] else "long long int" if counts["long"] >= 2 else \
        "long int" if counts["long"] else "int"
    if counts["unsigned"]:
        return core.replace("int", "unsigned int") if core != "int" else "unsigned int"
    return core


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        out.append(m.group(0).strip())
        pos = m.end()
    return [t for t in out if t]


def parse_type_spec(text: str) -> TypeSpec:
    """Parse a C type name such as ``const struct list_head *`` or ``unsigned long [4]``."""
    spec, rest = _parse(_tokens(text), allow_name=False)
    if rest is not None:
        raise TypeLookupError(f"unexpected {rest!r} in type name {text!r}")
    return spec


def parse_declarations(text: str) -> dict[str, TypeSpec]:
    """Parse ``type name;`` lines (C comments allowed) into ``{name: TypeSpec}``."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)
    out: dict[str, TypeSpec] = {}
    for decl in text.split(";"):
        if decl.strip():
            spec, name = _parse(_tokens(decl), allow_name=True)
            if name is None:
                raise TypeLookupError(f"declaration {decl.strip()!r} names no variable")
            out[name] = spec
    return out


def _parse(tokens: list[str], *, allow_name: bool) -> tuple[TypeSpec, str | None]:
    # specifiers, then a declarator: '*' [qualifiers] ... [name] ('[' N? ']')*
    quals, keyword, name, i = _specifiers(tokens)
    pointers: list[tuple[str, Qualifiers]] = []
    while i < len(tokens) and tokens[i] in ("*", *_QUALIFIER_WORDS):
        if tokens[i] == "*":
            pointers.append(("*", Qualifiers.NONE))
        elif pointers:
            pointers[-1] = ("*", pointers[-1][1] | _QUALIFIER_WORDS[tokens[i]])
        i += 1
    var: str | None = None
    if allow_name and i < len(tokens) and _is_identifier(tokens[i]):
        var, i = tokens[i], i + 1
    arrays, i = _array_suffixes(tokens, i)
    if i != len(tokens):
        if allow_name:
            raise TypeLookupError(f"cannot parse declaration near {' '.join(tokens[i:])!r}")
        return TypeSpec(keyword, name, quals, (*pointers, *arrays)), " ".join(tokens[i:])
    # C reads ``int *a[4]`` as an array of pointers: array suffixes apply last.
    return TypeSpec(keyword, name, quals, (*pointers, *reversed(arrays))), var


def _specifiers(tokens: list[str]) -> tuple[Qualifiers, str, str, int]:
    quals, i = Qualifiers.NONE, 0
    words: list[str] = []
    while i < len(tokens):
        tok = tokens[i]
        if tok in _QUALIFIER_WORDS:
            quals |= _QUALIFIER_WORDS[tok]
        elif tok in ("struct", "union", "enum"):
            if words or i + 1 >= len(tokens) or not _is_identifier(tokens[i + 1]):
                raise TypeLookupError(f"{tok} needs a tag name")
            return (quals | _trailing_quals(tokens, i + 2)[0], tok, tokens[i + 1], _trailing_quals(tokens, i + 2)[1])
        elif tok in _INT_WORDS or (not words and _is_identifier(tok)):
            words.append(tok)
        else:
            break
        i += 1
    if not words:
        raise TypeLookupError(f"no type in {' '.join(tokens)!r}")
    if any(w in _INT_WORDS for w in words):
        if not all(w in _INT_WORDS for w in words):
            raise TypeLookupError(f"bad type specifiers {' '.join(words)!r}")
        return quals, "int", canonical_base_name(words), i
    return quals, "name", words[0], i


def _trailing_quals(tokens: list[str], i: int) -> tuple[Qualifiers, int]:
    quals = Qualifiers.NONE
    while i < len(tokens) and tokens[i] in _QUALIFIER_WORDS:
        quals |= _QUALIFIER_WORDS[tokens[i]]
        i += 1
    return quals, i


def _array_suffixes(tokens: list[str], i: int) -> tuple[list[tuple[str, Qualifiers]], int]:
    out: list[tuple[str, Qualifiers]] = []
    while i < len(tokens) and tokens[i] == "[":
        if i + 1 < len(tokens) and tokens[i + 1] == "]":
            out.append(("[]", Qualifiers.NONE))
            i += 2
        elif i + 2 < len(tokens) and tokens[i + 2] == "]" and tokens[i + 1][0].isdigit():
            out.append((f"[{int(tokens[i + 1], 0)}]", Qualifiers.NONE))
            i += 3
        else:
            raise TypeLookupError("bad array length")
    return out, i


def _is_identifier(tok: str) -> bool:
    return tok.isidentifier() and tok not in _QUALIFIER_WORDS and tok not in ("struct", "union", "enum")
