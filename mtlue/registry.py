"""One registry for everything a config names: methods, weightings, defenses and datasets.

Modelled on timm's model registry. Each kind makes one :class:`Registry` and exposes its
``register_*`` / ``list_*`` / ``create_*`` functions on top of it, so all four share:

- one name rule (:data:`NAME_RULE`): names become result folders and Snakemake wildcard values;
- one duplicate check: a name belongs to one class, and a built-in name to its module;
- laziness: built-in entries are listed in a table (name -> module) and a module is imported
  when one of its names is first used, so listing or describing imports nothing of the kind's
  code and a victim trained with ``ew`` never imports torchjd or cvxpy;
- optional plugins: an entry-point group read when names are listed, loaded when used, so one
  broken plugin cannot stop the others and the error names the package to fix;
- one description rule (:meth:`Registry.summary`): the first paragraph of the docstring of the
  module that registers the name, which cites its paper (read from source, not imported);
- one check of hyperparameter names (:meth:`Registry.check_hyperparameters`).

This module imports nothing of the project but :mod:`mtlue.errors`; the base class of a kind is
named as ``"module:Class"`` and resolved when the first entry registers, so a kind's registry
module does not import the kind's code either (which is what broke the import cycle between
``mtlue.methods`` and ``mtlue.poisons``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from mtlue.errors import MtlueError, RegistryError

__all__ = ["NAME_RULE", "Entry", "Registry", "is_valid_name"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*(-[a-z0-9_]+)*$")
#: The rule every registered name follows, in words, for error messages.
NAME_RULE = "lower case letters, digits, '_' and inner '-', starting with a letter (as in mtlue-em or nash_mtl)"

T = TypeVar("T", bound=type)


def is_valid_name(name: object) -> bool:
    """Whether ``name`` may name an entry: it becomes a folder and a Snakemake wildcard value."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered class and the hyperparameter defaults it was registered with (``at-4``)."""

    cls: T
    defaults: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Names of one kind (``"method"``, ``"weighting"``, ...) and the classes they stand for.

    ``base`` is ``"module:Class"``, the class every entry subclasses; ``error`` the kind's
    :class:`~mtlue.errors.MtlueError` for unknown names and broken plugins; ``builtin`` maps each
    built-in name to the module that registers it; ``entry_point_group`` (optional) is where
    installed packages declare more entries. ``check`` (optional) is called with each name and
    class as it registers, for a kind's own rules (a weighting's family).
    """

    def __init__(
        self,
        kind: str,
        *,
        base: str,
        error: type[MtlueError],
        builtin: Mapping[str, str] | None = None,
        entry_point_group: str | None = None,
        check: Callable[[str, T], None] | None = None,
    ) -> None:
        self.kind = kind
        self.error = error
        self.builtin: dict[str, str] = dict(builtin or {})
        self.entry_point_group = entry_point_group
        self.entries: dict[str, Entry[T]] = {}
        self._base = base
        self._check = check
        for name in self.builtin:
            self._check_name(name)

    # -- registering ---------------------------------------------------------------------------

    def register(self, name: str, **defaults: Any) -> Callable[[T], T]:
        """Class decorator adding a subclass of the base under ``name``, with ``defaults`` for
        some of its hyperparameters (several names may share a class with different defaults)."""
        self._check_name(name)

        def decorator(cls: T) -> T:
            base = self.base_class()
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise RegistryError(f"register_{self.kind}({name!r}) decorates {base.__qualname__} subclasses, got {cls!r}")
            home = self.builtin.get(name)
            if home is not None and cls.__module__ != home:
                raise RegistryError(f"{self.kind} {name!r} is registered twice ({home} and {cls})")
            if name in self.entries and self.entries[name].cls is not cls:
                raise RegistryError(f"{self.kind} {name!r} is registered twice ({self.entries[name].cls} and {cls})")
            unknown = sorted(set(defaults) - set(_hyperparameter_names(cls)))
            if unknown:
                raise RegistryError(f"register_{self.kind}({name!r}): {cls.__name__} has no hyperparameter(s) {unknown}")
            if self._check is not None:
                self._check(name, cls)
            cls.name = name
            self.entries[name] = Entry(cls, dict(defaults))
            return cls

        return decorator

    def base_class(self) -> type:
        module, _, attribute = self._base.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def _check_name(self, name: str) -> None:
        if not is_valid_name(name):
            raise RegistryError(f"{self.kind} name {name!r} must be {NAME_RULE}")

    # -- finding -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Built-in, registered and installed names, sorted (nothing is imported)."""
        return sorted(set(self.builtin) | set(self.entries) | set(self.plugins()))

    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name``, importing its built-in module or loading its plugin on first use."""
        plugins = self.plugins()
        if name in plugins and (name not in self.entries or not self._is_builtin(self.entries[name].cls)):
            return self._load_plugin(plugins[name])
        if name not in self.entries and name in self.builtin:
            importlib.import_module(self.builtin[name])
            if name not in self.entries:
                raise self.error(
                    f"module {self.builtin[name]} registers no {self.kind} {name!r}; "
                    f"fix its @register_{self.kind} or the registry's table of built-in {self.kind}s"
                )
        try:
            return self.entries[name]
        except KeyError:
            raise self.unknown(name) from None

    def get(self, name: str) -> T:
        """The class registered as ``name``."""
        return self.entry(name).cls

    def unknown(self, name: str, hint: str = "") -> MtlueError:
        return self.error(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}{hint}")

    def check_hyperparameters(self, name: str, given: Iterable[str], valid: Iterable[str], *, noun: str = "hyperparameter") -> None:
        """Refuse names in ``given`` that are not in ``valid``, listing the valid ones."""
        valid = list(valid)
        unknown = sorted(set(given) - set(valid))
        if unknown:
            raise self.error(f"{self.kind} {name!r} has no {noun}(s) {', '.join(unknown)}; valid: {', '.join(valid) or 'none'}")

    # -- describing ----------------------------------------------------------------------------

    def summary(self, name: str) -> str:
        """One line describing ``name``: its class's own ``description`` when the class sets one
        (a method, a dataset), else the first paragraph of the docstring of the module that
        registers it (a weighting, a defense: that docstring cites the paper). A built-in not yet
        imported is described from its source, so listing stays free of its imports."""
        if name in self.builtin and name not in self.entries:
            text = _source_description(self.builtin[name], self.kind, name)
        else:
            cls = self.get(name)
            text = vars(cls).get("description") or sys.modules[cls.__module__].__doc__ or cls.__doc__
        paragraph = (text or name).strip().split("\n\n")[0]
        return " ".join(line.strip() for line in paragraph.splitlines())

    # -- plugins -------------------------------------------------------------------------------

    def plugins(self) -> dict[str, metadata.EntryPoint]:
        """Entry points of installed plugins, refusing names claimed twice or taken from a built-in."""
        if self.entry_point_group is None:
            return {}
        group = self.entry_point_group
        found: dict[str, metadata.EntryPoint] = {}
        for entry_point in metadata.entry_points(group=group):
            name = entry_point.name
            where = f"package {_package(entry_point)} declares a {self.kind} {name!r} in the {group!r} entry points"
            if not is_valid_name(name):
                raise self.error(f"{where}; {self.kind} names are {NAME_RULE}: rename the plugin's entry point")
            registered = self.entries.get(name)
            if name in self.builtin or (registered is not None and self._is_builtin(registered.cls)):
                raise self.error(f"{where}, which is a built-in {self.kind}'s name; rename the plugin's entry point")
            if name in found and found[name].value != entry_point.value:
                raise self.error(
                    f"{self.kind} {name!r} is declared by two packages, {_package(found[name])} and "
                    f"{_package(entry_point)}; uninstall one of them"
                )
            found[name] = entry_point
        return found

    def _is_builtin(self, cls: type) -> bool:
        return cls.__module__.split(".")[0] in ("mtlue", "victims")

    def _load_plugin(self, entry_point: metadata.EntryPoint) -> Entry[T]:
        package = _package(entry_point)
        base = self.base_class()
        try:
            loaded = entry_point.load()
        except Exception as error:  # any import-time failure of third-party code
            raise self.error(
                f"{self.kind} {entry_point.name!r} from package {package} fails to load "
                f"({entry_point.value}: {type(error).__name__}: {error}); reinstall or uninstall that package"
            ) from error
        if not (isinstance(loaded, type) and issubclass(loaded, base)):
            public = f"{base.__module__.rsplit('.', 1)[0]}.{base.__qualname__}"
            raise self.error(
                f"package {package} declares {self.kind} {entry_point.name!r} as {entry_point.value}, which is "
                f"not a subclass of {public}; fix that package's entry point"
            )
        registered = self.entries.get(entry_point.name)
        if registered is None:
            self.register(entry_point.name)(loaded)
        elif registered.cls is not loaded:
            raise self.error(
                f"package {package} declares {self.kind} {entry_point.name!r} as {entry_point.value}, but "
                f"{registered.cls.__module__}.{registered.cls.__qualname__} registered that name already; rename one"
            )
        return self.entries[entry_point.name]


def _hyperparameter_names(cls: type) -> tuple[str, ...]:
    names = getattr(cls, "hyperparameter_names", None)
    return tuple(names()) if callable(names) else ()


def _package(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an unidentified package"


def _source_description(module: str, kind: str, name: str) -> str | None:
    """What :meth:`Registry.summary` reads, parsed from ``module``'s source instead of imported:
    the ``description = "..."`` of the class decorated with ``register_<kind>(name)``, else the
    module docstring."""
    if module in sys.modules:
        return sys.modules[module].__doc__
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return importlib.import_module(module).__doc__
    with open(spec.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), spec.origin)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(_registers(decorator, kind, name) for decorator in node.decorator_list):
            for statement in node.body:
                targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
                value = getattr(statement, "value", None)
                if any(isinstance(t, ast.Name) and t.id == "description" for t in targets) and isinstance(value, ast.Constant):
                    return value.value
    return ast.get_docstring(tree)


def _registers(decorator: ast.expr, kind: str, name: str) -> bool:
    return (
        isinstance(decorator, ast.Call)
        and ast.unparse(decorator.func).endswith(f"register_{kind}")
        and bool(decorator.args)
        and isinstance(decorator.args[0], ast.Constant)
        and decorator.args[0].value == name
    )
