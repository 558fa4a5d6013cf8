"""Package attributes that load on first use (PEP 562), so ``bap`` and ``bap.data`` export their names without
importing torch until one of them is used."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each exported name to the module defining
    it; any other name that is a submodule (``bap.model``) resolves to it, as it did with eager imports."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        loaded = [n for n, v in vars(sys.modules[package]).items()
                  if isinstance(v, types.ModuleType) and v.__name__.startswith(f"{package}.")]
        return sorted({*exports, *loaded})

    return __getattr__, __dir__
