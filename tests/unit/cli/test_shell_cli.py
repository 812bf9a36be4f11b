"""kcrash shell: -c code with drgn's names and `from drgn.helpers.linux... import` lines on a synthetic
task kernel, errors as the user's frames only, the import hook restoring a real drgn afterwards,
and Tab completion of names, prog["symbol"] and members."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from kcrash.analysis.drgn_compat import drgn_program
from kcrash.cli import main, shell
from kcrash.cli.shell import ShellCompleter, drgn_imports, shell_namespace
from support.task_kernel import INIT_TASK, Kernel


@pytest.fixture
def dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    k = Kernel()
    init = k.task(1, 1, b"init")
    k.ring(INIT_TASK + 32, [init + 32])
    k.prog.close = lambda: None  # type: ignore[method-assign]
    monkeypatch.setattr("kcrash.analysis.target.open_target", lambda p, cache, orc=True, **kw: k.prog)
    path = tmp_path / "vmcore"
    path.write_bytes(b"not really a dump")
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_shell_runs_a_drgn_script(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = ("from drgn.helpers.linux.pid import find_task, for_each_task\nimport drgn\n"
              "from drgn import Object, container_of\n"
              "print(type(prog).__name__, find_task(prog, 1).comm.string_().decode(),\n"
              "      [int(t.pid) for t in for_each_task(prog)], prog.symbol('init_task').name,\n"
              "      drgn.Program is type(prog))")
    code, out, err = _run(capsys, "shell", dump, "-c", script)
    assert (code, out, err) == (0, "DrgnProgram init [1] init_task True\n", "")


def test_shell_has_no_drgn_module_it_does_not_provide(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "shell", dump, "-c", "from drgn.helpers.linux.bpf import bpf_map_for_each")
    assert code == 1 and "kcrash shell has no drgn.helpers.linux.bpf" in err.splitlines()[-1]
    code, _, err = _run(capsys, "shell", dump, "-c", "from drgn.helpers.linux.fs import inode_paths")
    assert code == 1 and "kcrash shell has no drgn.helpers.linux.fs.inode_paths" in err.splitlines()[-1]


def test_shell_error_shows_only_the_users_frames(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "shell", dump, "-c", "def f():\n    return 1 / 0\nf()")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == "kcrash: error: ZeroDivisionError: division by zero"
    assert "<kcrash shell -c>" in err and "kcrash/cli" not in err and "site-packages" not in err


def test_drgn_imports_put_a_real_drgn_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real = types.ModuleType("drgn")
    monkeypatch.setitem(sys.modules, "drgn", real)
    # as if only the top package were imported (another test on this worker may have imported drgn's helpers)
    for name in [n for n in sys.modules if n.startswith("drgn.")]:
        monkeypatch.delitem(sys.modules, name)
    prog = drgn_program(Kernel().prog)
    with drgn_imports(prog):
        import drgn
        from drgn.helpers.linux.pid import find_task

        assert drgn is not real and callable(find_task)
    assert sys.modules["drgn"] is real and "drgn.helpers.linux.pid" not in sys.modules


def test_completion_of_names_symbols_and_members() -> None:
    namespace = shell_namespace(Kernel().prog)
    completer = ShellCompleter(namespace)
    assert "find_task(" in completer.global_matches("find_t")
    assert completer.global_matches('prog["init_t') == ['prog["init_task"]']
    assert completer.global_matches("prog['tain") == ["prog['taint_flags']", "prog['tainted_mask']"]
    members = completer.attr_matches('prog["init_task"].co')
    assert members == ['prog["init_task"].comm']
    assert 'prog["init_task"].pid' in completer.attr_matches('prog["init_task"].')
    assert completer.attr_matches("find_task(prog, 1).co") == []  # calls are not evaluated
    assert completer.complete('prog["init_t', 0) == 'prog["init_task"]'
    assert completer.complete('prog["init_t', 1) is None
    assert shell.commands[0].name == "shell"
