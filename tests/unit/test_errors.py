"""The error tree tells the truth: every class is raised somewhere, and the picture matches."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import twin.errors
from twin.errors import TwinError

ROOT = Path(__file__).resolve().parents[2]
CLASSES = {
    name: cls
    for name, cls in vars(twin.errors).items()
    if inspect.isclass(cls) and issubclass(cls, TwinError)
}


def _raised_names() -> set[str]:
    """The names of every exception class a ``raise`` in the twin package constructs."""
    names: set[str] = set()
    for path in (ROOT / "twin").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_every_error_class_is_raised_or_is_the_base_of_one_that_is() -> None:
    raised = _raised_names()
    for name, cls in CLASSES.items():
        below = [other for other in CLASSES.values() if issubclass(other, cls)]
        assert any(other.__name__ in raised for other in below), f"{name} is never raised"


def test_the_picture_in_the_docstring_is_the_tree() -> None:
    doc = twin.errors.__doc__ or ""
    for name, cls in CLASSES.items():
        if cls is TwinError:
            continue
        bases = ", ".join(b.__name__ for b in cls.__bases__)
        assert f"{name}({bases})" in doc, f"{name}({bases}) is not in the picture"


def test_no_error_class_lives_outside_the_tree() -> None:
    # Adapters raise the tree's classes; a private one is fine only if it never escapes
    # its module (the service's own stop signal).
    allowed_private = {"_StopRequestedError"}
    for path in (ROOT / "twin").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                assert node.name in allowed_private, f"{path.name}: {node.name}"
