"""Loading saga definitions from the user's own modules (`saga serve --definitions MOD`).

A definitions module is ordinary Python: it imports its generated protobuf
stubs (which registers their services in the descriptor pool the registry
resolves calls in) and builds SagaDefinition objects. It offers them either as
`DEFINITIONS`, an iterable of SagaDefinition, or, failing that, as module-level
SagaDefinition attributes.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from types import ModuleType

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import ConfigurationError

DEFAULT_DEFINITIONS_MODULE = "orchestrator.examples"
DEFINITIONS_ATTRIBUTE = "DEFINITIONS"


def parse_module_names(text: str) -> list[str]:
    """`a.sagas, b.sagas` (SAGA_DEFINITIONS) as a list of module names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def make_working_directory_importable() -> None:
    """Let `saga ...` import modules from the directory it runs in, as `python -m` does.

    The `saga` console script's sys.path starts with its own bin directory, so
    without this a user's `--definitions my_sagas` next to them would not import.
    """
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def import_definitions_module(name: str) -> ModuleType:
    """Import one module; ConfigurationError says what failed and where."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(f"{error.name}.")):
            raise ConfigurationError(
                f"cannot import definitions module {name!r}: no module named {error.name!r} "
                f"(is its directory on PYTHONPATH, or is `saga` run from it?)"
            ) from None
        raise ConfigurationError(
            f"cannot import definitions module {name!r}: {_what_failed(error)}"
        ) from None
    except Exception as error:
        raise ConfigurationError(
            f"cannot import definitions module {name!r}: {_what_failed(error)}"
        ) from None


def _what_failed(error: BaseException) -> str:
    """The error and the innermost place it was raised, without a whole traceback."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, SyntaxError) and error.filename:
        return f"{text} ({error.filename}, line {error.lineno})"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        frame = frames[-1]
        return f"{text} ({frame.filename}, line {frame.lineno})"
    return text


def definitions_in(module: ModuleType) -> list[SagaDefinition]:
    """The module's definitions: its DEFINITIONS, else every module-level SagaDefinition."""
    offered = getattr(module, DEFINITIONS_ATTRIBUTE, None)
    if offered is not None:
        if isinstance(offered, SagaDefinition | str | bytes) or not isinstance(offered, Iterable):
            raise ConfigurationError(
                f"{module.__name__}.{DEFINITIONS_ATTRIBUTE} must be an iterable of "
                f"SagaDefinition, not {type(offered).__name__}"
            )
        found = list(offered)
        for item in found:
            if not isinstance(item, SagaDefinition):
                raise ConfigurationError(
                    f"{module.__name__}.{DEFINITIONS_ATTRIBUTE} holds a {type(item).__name__}, "
                    "not a SagaDefinition"
                )
    else:
        found = [value for value in vars(module).values() if isinstance(value, SagaDefinition)]
    if not found:
        raise ConfigurationError(
            f"definitions module {module.__name__!r} holds no saga definitions: give it "
            f"a {DEFINITIONS_ATTRIBUTE} tuple or module-level SagaDefinition objects"
        )
    return _unique(found)


def load_definitions(module_names: Sequence[str]) -> list[SagaDefinition]:
    """Every definition of the named modules, in order; the same object only once.

    The registry then checks them; two different objects with the same type and
    version are its error to report.
    """
    if not module_names:
        raise ConfigurationError("no definitions module named")
    found: list[SagaDefinition] = []
    for name in module_names:
        found.extend(definitions_in(import_definitions_module(name)))
    return _unique(found)


def _unique(definitions: Iterable[SagaDefinition]) -> list[SagaDefinition]:
    seen: set[int] = set()
    unique: list[SagaDefinition] = []
    for definition in definitions:
        if id(definition) not in seen:
            seen.add(id(definition))
            unique.append(definition)
    return unique
