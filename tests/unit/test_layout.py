"""The layout the README promises: which package may import which, and modules of one idea."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "flotilla"
MAX_MODULE_LINES = 650


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports, at the top or inside a function, relative imports resolved
    against the file's package; ``from a import b`` counts as importing ``a`` and ``a.b`` (``b``
    may be a module)."""
    package = list(path.relative_to(root).parent.parts)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def in_the_scheduler_service(module: str) -> bool:
    return module == "flotilla.streams" or module.startswith("flotilla.streams.")


def product_files(*parts: str) -> list[Path]:
    base = PRODUCT.joinpath(*parts)
    assert base.exists(), base  # a renamed package must not leave its check passing on no files
    return [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))


@pytest.mark.parametrize("part", ["api", "executor", "cli.py", "log", "jobs", "scheduling", "lookout"])
def test_nothing_outside_the_scheduler_service_imports_it(part: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if in_the_scheduler_service(m))
        for path in product_files(part)
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


@pytest.mark.parametrize(
    "source",
    [
        "import flotilla.streams.app as app",
        "from flotilla import streams",
        "from flotilla.streams.app import make_app",
        "from ..streams import app",
        "from ..streams.app import make_app",
        "def later():\n    from flotilla.streams import app\n",
    ],
)
def test_the_import_scan_sees_every_form_of_import(tmp_path: Path, source: str) -> None:
    module = tmp_path / "flotilla" / "api" / "service.py"
    module.parent.mkdir(parents=True)
    module.write_text(source)
    assert any(in_the_scheduler_service(m) for m in imported_modules(module, tmp_path))


def test_the_product_never_imports_the_test_harness() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "tests")
        for path in product_files()
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_scheduling_core_does_no_kafka_and_no_faust() -> None:
    io_libraries = {"aiokafka", "kafka", "faust", "psycopg", "grpc"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in io_libraries
        )
        for path in product_files("scheduling")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in product_files()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
