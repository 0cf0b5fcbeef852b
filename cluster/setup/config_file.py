"""The config file (``-c/--config PATH``, ``STICKY_CLUSTER_CONFIG``): Python, as gunicorn.conf.py.

The file is run once, in the master, before anything else. What it defines at module
level is read as:

* an option, named by its keyword in :data:`cluster.setup.options.OPTIONS` (``workers = 4``,
  ``bind = ["0.0.0.0:5000"]``, ``worker_class = "gevent"``); the command line's own
  switches (``check``, ``config``, ``print_config``) are not settings and are refused;
* a hook, a function named as one of :data:`cluster.setup.hooks.HOOK_NAMES`.

Names the file imports, and names that start with ``_``, are the file's own and are
ignored; any other name is an error naming it and the closest option or hook, so a typo
never passes silently. Every error is one line that starts with ``FILE:LINE:``.

Precedence (:func:`merge`): the command line, then the environment, then the file, then
the defaults.
"""
from __future__ import annotations

import ast
import dataclasses
import traceback
from typing import Callable, Mapping

from cluster.protocol.adapters import redact

from .config import ConfigError
from .hooks import HOOK_NAMES, closest
from .options import BY_NAME, SETTINGS, Option, default


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    """What a config file sets.

    :param path: the file.
    :param values: option keyword -> value, checked and in the form ``Master`` takes.
    :param hooks: hook name -> function.
    :param lines: name -> the line that defines it.
    """

    path: str
    values: dict[str, object]
    hooks: dict[str, Callable]
    lines: dict[str, int]

    def where(self, name: str) -> str:
        """``FILE:LINE`` of ``name``'s definition."""
        return f"{self.path}:{self.lines.get(name, 1)}"


def load(path: str) -> ConfigFile:
    """Run the config file at ``path`` and read its options and hooks.

    Raises :class:`~cluster.setup.config.ConfigError` (one line, ``FILE:LINE: …``) for a file
    that cannot be read, does not compile, raises while it runs, names an unknown option
    or hook, or gives an option a value of the wrong type or out of range.
    """
    try:
        with open(path, encoding="utf-8") as file:
            source = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the config file is not UTF-8 text") from None
    try:
        tree = ast.parse(source, path)
        code = compile(tree, path, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno or 1}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # e.g. a NUL byte
        raise ConfigError(f"{path}:1: {exc}") from None
    namespace: dict[str, object] = {"__file__": path, "__name__": "__sticky_cluster_config__"}
    try:
        exec(code, namespace)  # noqa: S102 - running the operator's own config file is the point
    except Exception as exc:  # noqa: BLE001 - any error in the file is one line for the operator
        line = next((frame.lineno for frame in reversed(traceback.extract_tb(exc.__traceback__))
                     if frame.filename == path), 1)
        raise ConfigError(f"{path}:{line}: {type(exc).__name__}: {exc}") from None
    lines = _defined_names(tree)
    values: dict[str, object] = {}
    hooks: dict[str, Callable] = {}
    for name, line in lines.items():
        if name.startswith("_") or name not in namespace:
            continue
        value = namespace[name]
        if name in HOOK_NAMES:
            if not callable(value):
                raise ConfigError(f"{path}:{line}: hook {name} must be a function")
            hooks[name] = value  # type: ignore[assignment]
        elif name in BY_NAME and BY_NAME[name].setting:
            try:
                values[name] = file_value(BY_NAME[name], value)
            except ValueError as exc:
                raise ConfigError(f"{path}:{line}: {exc}") from None
        else:
            known = [option.name for option in SETTINGS] + list(HOOK_NAMES)
            raise ConfigError(f"{path}:{line}: unknown option {name!r}{closest(name, known)} "
                              "(the file's own names start with _)")
    return ConfigFile(path, values, hooks, lines)


def _defined_names(tree: ast.Module) -> dict[str, int]:
    """Names the file's module-level code assigns or defines (not imports), with their line
    (inside ``if``/``try``/``with``/``for`` blocks too, not inside functions or classes)."""
    names: dict[str, int] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.setdefault(node.name, node.lineno)
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            names.setdefault(name.id, node.lineno)
            for block in ("body", "orelse", "finalbody"):
                visit(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                visit(handler.body)

    visit(tree.body)
    return names


def file_value(option: Option, value: object) -> object:
    """``value`` from a config file, as ``Master`` takes it for ``option``; checked.

    Raises ValueError (one line) for a value of the wrong type or that the option's
    check refuses.
    """
    label = option.name
    if option.multiple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise ValueError(f"{label} must be a string or a list of strings, got {value!r}")
        option.validate(tuple(items))
        return list(items)
    if option.kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{label} must be True or False, got {value!r}")
        checked: object = value
    elif option.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{label} must be a whole number, got {value!r}")
        checked = value
    elif option.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{label} must be a number, got {value!r}")
        checked = float(value)
    elif option.name == "umask" and isinstance(value, int) and not isinstance(value, bool):
        checked = f"{value:o}"  # umask = 0o027 as well as "027"
    elif not isinstance(value, str):
        raise ValueError(f"{label} must be a string, got {value!r}")
    else:
        checked = value.lower() if option.choices else value
    if option.name == "umask":
        try:
            option.validate(int(checked, 8))  # type: ignore[arg-type]
        except ValueError:
            raise ValueError(f"bad umask {value!r}: use an octal such as 0o027 or '027'") from None
    else:
        option.validate(checked)
    return checked


def merge(given: Mapping[str, tuple[object, str]], config: ConfigFile | None
          ) -> dict[str, tuple[object, str]]:
    """Every option's value and where it comes from, by precedence.

    :param given: option -> (value, ``"command line"`` or ``"environment"``), for the
                  options given there (None values are not given).
    :param config: the config file, if any.
    :returns: option -> (value, source): the command line or the environment as given,
              else the config file's value (source ``"config file FILE:LINE"``), else
              (None, ``"default"``).
    """
    merged: dict[str, tuple[object, str]] = {}
    for option in SETTINGS:
        name = option.name
        if name in given:
            merged[name] = given[name]
        elif config is not None and name in config.values:
            merged[name] = (config.values[name], f"config file {config.where(name)}")
        else:
            merged[name] = (None, "default")
    return merged


def report(merged: Mapping[str, tuple[object, str]], config: ConfigFile | None) -> str:
    """``--print-config``: one line per option, ``name = value  # source``, in the table's
    order, then the hooks; valid Python (a config file could start from it). Passwords in
    the adapter URL are masked."""
    rows = []
    for option in SETTINGS:
        value, source = merged[option.name]
        if source == "default":
            value = default(option.name)
        if option.multiple and value is not None:
            value = list(value)  # type: ignore[call-overload]
        if option.name == "adapter" and isinstance(value, str):
            value = redact(value)
        rows.append((f"{option.name} = {value!r}", source))
    if config is not None:
        rows += [(f"# hook {name}", f"config file {config.where(name)}") for name in config.hooks]
    width = min(max(len(text) for text, _ in rows), 44)
    return "\n".join(f"{text.ljust(width)}  # {source}" for text, source in rows)
