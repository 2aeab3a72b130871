"""The package reads as the pipeline: imports flow one way between the wings (docs/architecture.md).

.venv/bin/pytest tests/test_layout.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "radgpt"
# a module may import its own wing and wings listed before it, never one listed after it
ORDER = ["config", "runtime", "cluster", "exits", "schema", "table", "ingest", "sample", "model", "train",
         "writeback", "draft", "evaluation", "loop", "nightly", "cli"]  # fmt: skip
SIZE = 400  # lines: modules stay small enough to read in one sitting (a few carry ~10% more)


def wing(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return [m for m in out if m.startswith("radgpt.")]


def modules() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if wing(p) not in ("__init__", "__main__")]


def test_every_wing_is_ranked():
    assert {wing(p) for p in modules()} <= set(ORDER)


def test_imports_flow_one_way():
    rank = {w: i for i, w in enumerate(ORDER)}
    back = [
        f"{p.relative_to(PKG)} imports {m}"
        for p in modules()
        for m in imports(p)
        if rank[m.split(".")[1]] > rank[wing(p)]
    ]
    assert not back, "imports against the pipeline's direction:\n" + "\n".join(back)


def test_wings_say_what_they_own():
    for d in sorted(x for x in PKG.iterdir() if (x / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((d / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 5, (
            f"{d.name}/__init__.py needs a docstring of what it owns"
        )


def test_modules_stay_small():
    big = {
        str(p.relative_to(PKG)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > SIZE * 1.1
    }
    assert not big, f"modules over ~{SIZE} lines: {big}"
