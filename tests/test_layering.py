"""The C tree's layering: src/core is pure C, src/binding is the CPython binding."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def includes(path: Path) -> list[str]:
    return INCLUDE.findall(path.read_text(encoding="utf-8"))


def test_the_core_never_includes_python_or_the_binding():
    binding = {p.name for p in (SRC / "binding").iterdir()}
    core = sorted((SRC / "core").glob("*.[ch]"))
    assert core, "src/core is empty"
    for path in core:
        for inc in includes(path):
            assert inc not in ("Python.h", "structmember.h") and not inc.startswith("py"), (path, inc)
            assert inc not in binding, (path, inc)


def test_every_c_file_is_in_one_of_the_two_layers():
    assert sorted(p.name for p in SRC.iterdir()) == ["binding", "core"]
    assert all(p.name.startswith("ck_") for p in (SRC / "core").iterdir())
    assert all(p.name.startswith(("py_", "module")) for p in (SRC / "binding").iterdir())


def test_no_c_file_is_over_700_lines():
    for path in sorted(SRC.rglob("*.[ch]")):
        n = path.read_text(encoding="utf-8").count("\n")
        assert n <= 720, f"{path.relative_to(SRC)} has {n} lines; split it by job"
