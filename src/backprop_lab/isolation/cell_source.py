"""Code given to `check()` as Python objects (a notebook's functions or classes), written as a module that stands on
its own: it runs in the learner's own process, which has none of the notebook's globals, so the file carries what
the objects use from where they were defined: the modules they import (`import torch`), the notebook's own helper
functions and classes (their source, in turn), and plain constants. Each given object keeps its own name; the
lesson's name is bound to it at the end (`relu_grad = my_relu_grad`). What a file cannot carry (a tensor, an open
file, a lambda's closure) is said in one line when `check()` is called, before any run.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import linecache
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

from backprop_lab.core.code_files import INSTALLED
from backprop_lab.core.errors import ConfigError

CONSTANTS = (int, float, complex, str, bytes, bool, type(None))


class _Writer:
    def __init__(self) -> None:
        self.imports: dict[str, str] = {}  # name: its import line
        self.definitions: dict[str, str] = {}  # name: its source, helpers before what uses them
        self.constants: dict[str, str] = {}
        self.visiting: set[int] = set()

    def define(self, name: str, obj: Any, given_as: str) -> None:
        """`obj` (a function or class of the notebook's) under its own name, with what it uses carried."""
        if name in self.definitions or id(obj) in self.visiting:
            return
        self.visiting.add(id(obj))
        source = _source(obj, given_as)
        for used, value in _globals_used(obj).items():
            if used != name:
                self.carry(used, value, given_as)
        self.definitions[name] = source

    def carry(self, name: str, value: Any, given_as: str) -> None:
        if isinstance(value, types.ModuleType):
            module = value.__name__
            self.imports[name] = f"import {module}" if module == name else f"import {module} as {name}"
        elif isinstance(value, CONSTANTS) or (isinstance(value, tuple) and all(isinstance(v, CONSTANTS) for v in
                                                                                  value)):  # fmt: skip
            self.constants[name] = f"{name} = {value!r}"
        elif isinstance(value, (types.FunctionType, type)) and _installed(value):
            module, qualname = value.__module__, value.__qualname__
            self.imports[name] = (f"from {module} import {qualname}" if qualname == name
                                  else f"from {module} import {qualname} as {name}")  # fmt: skip
        elif isinstance(value, (types.FunctionType, type)):
            self.define(name, value, given_as)
            if value.__name__ != name:
                self.constants[name] = f"{name} = {value.__name__}"
        else:
            raise ConfigError(f"check: {given_as} uses {name!r}, a {type(value).__name__} of your notebook's, which a "
                              "file cannot carry; define it inside the function, or give code= a file")  # fmt: skip


def module_source(objects: dict[str, Any]) -> str:
    """The module for `objects` (the lesson's name: the object given for it)."""
    writer = _Writer()
    for lesson_name, obj in objects.items():
        if not isinstance(obj, (types.FunctionType, type)):
            raise ConfigError(f"check: {lesson_name} is a {type(obj).__name__}; give a function (or, for Lin, Relu, "
                              "Mse and Net, a class) defined in Python")  # fmt: skip
        writer.define(obj.__name__, obj, lesson_name)
    aliases = [f"{lesson} = {obj.__name__}" for lesson, obj in objects.items() if obj.__name__ != lesson]
    parts = [
        "# Given to backprop_lab.check() as Python objects: their source, and what they use from where they were "
        "defined.",
        "\n".join(sorted(set(writer.imports.values()))),
        "\n".join(writer.constants.values()),
        "\n\n\n".join(writer.definitions.values()),
        ("# the lesson's names, for the objects given\n" + "\n".join(aliases)) if aliases else "",
    ]
    return "\n\n\n".join(p for p in parts if p) + "\n"


def _installed(value: Any) -> bool:
    """A function or class that an import in the learner's process gives back as it is: from Python's library or an
    installed package (a notebook's, or a local module's, is carried by its source instead)."""
    module = sys.modules.get(getattr(value, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if file is None or "<locals>" in value.__qualname__ or not str(Path(file).resolve()).startswith(INSTALLED):
        return False
    found = module
    for part in value.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is value


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _globals_used(obj: Any) -> dict[str, Any]:
    """The module-level names `obj` reads (a function's global loads, a class's methods' and its bases), with their
    values where they are defined; builtins are left out."""
    if isinstance(obj, types.FunctionType):
        space, codes = obj.__globals__, list(_code_objects(obj.__code__))
        if obj.__closure__:
            free = ", ".join(obj.__code__.co_freevars)
            raise ConfigError(f"check: {obj.__name__} reads {free} from an enclosing function, which a file cannot "
                              "carry; define it at the top level")  # fmt: skip
    else:
        methods = [f for f in vars(obj).values() if isinstance(f, types.FunctionType)]
        module = sys.modules.get(obj.__module__)  # where the class was defined: its methods' globals say it too
        space = methods[0].__globals__ if methods else vars(module) if module else {}
        codes = [c for f in methods for c in _code_objects(f.__code__)]
    names = [i.argval for code in codes for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")]
    if isinstance(obj, type):
        names += [b.__name__ for b in obj.__bases__ if b is not object]
    return {n: space[n] for n in dict.fromkeys(names) if n in space and not hasattr(builtins, n)}


def _source(obj: Any, given_as: str) -> str:
    try:
        return textwrap.dedent(inspect.getsource(obj)).rstrip("\n")
    except (OSError, TypeError):
        pass
    found = _class_source(obj) if isinstance(obj, type) else None
    if found is None:
        raise ConfigError(f"check: the source of {given_as} ({getattr(obj, '__qualname__', obj)!r}) cannot be read "
                          "back (typed at a prompt?); put it in a file and give code= that file")  # fmt: skip
    return found


def _class_source(cls: type) -> str | None:
    """A class defined in a notebook cell (inspect finds no file for `__main__` before Python 3.13): the cell, found
    through one of its methods, and the class read out of it."""
    for f in vars(cls).values():
        code = getattr(f, "__code__", None)
        if code is None:
            continue
        text = "".join(linecache.getlines(code.co_filename))
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls.__name__ and \
                    node.lineno <= code.co_firstlineno <= node.end_lineno:  # fmt: skip
                return textwrap.dedent(ast.get_source_segment(text, node, padded=True))
    return None
