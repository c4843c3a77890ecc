"""``registry check-config``: validate a configuration file and its REGISTRY_* overrides,
and say where each problem is: ``config.yml:12:7`` for a YAML key or value, the variable's
name for an environment override.

The YAML is composed into nodes (which carry line and column marks) as well as loaded, so
that the location of each pydantic error, a path of keys, can be followed through the
nodes to the line it came from. Messages never repeat the offending value: it may be a
secret.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

# Read by `registry serve` itself, not a configuration key (defined where serve is).
from registry.cli import CONFIG_FILE_ENV as CONFIG_FILE_ENV
from registry.config import Config, apply_env
from registry.preflight import check_files

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line:column", "file", or an environment variable's name
    key: str  # dotted configuration key, "" for the document as a whole
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        return f"{self.where}: {self.severity}: {key}{self.message}"


@dataclass
class CheckResult:
    config: Config | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return self.config is not None and not any(p.severity == "error" for p in self.problems)


def check_config(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str], *, files: bool = False
) -> CheckResult:
    """Validate the file (if any) and the environment as ``load_config`` reads them and,
    with ``files``, what ``registry serve`` finds when it starts: the files the
    configuration names and the data folder (registry/preflight.py)."""
    problems: list[Problem] = []
    name = str(path) if path is not None else "<no file>"
    data: dict[str, Any] = {}
    root: yaml.Node | None = None
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            return CheckResult(None, [Problem(name, "", f"cannot read: {exc.strerror or exc}")])
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            return CheckResult(None, [_yaml_problem(name, exc)])
        if loaded is not None and not isinstance(loaded, dict):
            where = _at(name, root) if root is not None else name
            return CheckResult(None, [Problem(where, "", "the top level must be a mapping")])
        data = loaded or {}
        if root is not None:
            problems.extend(_duplicate_keys(name, root, ()))

    origins: dict[tuple[str, ...], str] = {}
    for var in sorted(environ):
        if not var.startswith("REGISTRY_") or var == CONFIG_FILE_ENV:
            continue
        probe: dict[str, Any] = {}
        if apply_env(probe, {var: environ[var]}):
            problems.append(Problem(var, "", "matches no configuration key", "warning"))
            continue
        for leaf in _leaves(probe, ()):
            origins[leaf] = var
    apply_env(data, environ)

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            # A rule across settings says which of them it is most likely about.
            loc = (*error["loc"], *error.get("ctx", {}).get("at", ()))
            message = error["msg"].removeprefix("Value error, ")
            problems.append(
                Problem(_where(name, root, loc, origins, error["type"]), _key(loc), message)
            )
        return CheckResult(None, problems)
    if files:
        for finding in check_files(config):
            where = _where(name, root, finding.loc, origins, "")
            problems.append(Problem(where, _key(finding.loc), finding.message, finding.severity))
    return CheckResult(config, problems)


def load_or_exit(path: str | os.PathLike[str] | None, *, files: bool = False) -> Config:
    """The configuration as ``load_config`` reads it, or each problem with its line on
    stderr and exit 2. ``files``: also what ``registry serve`` needs of the files and the
    data folder (``check_config``)."""
    result = check_config(path, os.environ, files=files)
    if result.ok and result.config is not None:
        return result.config
    # Never a ValidationError's own text: it shows the offending values.
    for problem in result.problems:
        if problem.severity == "error":
            print(f"registry: invalid configuration: {problem}", file=sys.stderr)
    raise SystemExit(2)


def _yaml_problem(name: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
    return Problem(where, "", f"not valid YAML: {what}")


def _at(name: str, node: yaml.Node) -> str:
    return f"{name}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _leaves(data: dict[str, Any], prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.extend(_leaves(value, (*prefix, key)))
        else:
            out.append((*prefix, key))
    return out


def _duplicate_keys(name: str, node: yaml.Node, prefix: tuple[str, ...]) -> list[Problem]:
    """YAML loaders keep the last of two equal keys silently; a config that says a thing
    twice is almost always a mistake."""
    out: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                out.append(
                    Problem(
                        _at(name, key_node),
                        ".".join((*prefix, key)),
                        "key given twice; the last one wins",
                        "warning",
                    )
                )
            seen.add(key)
            out.extend(_duplicate_keys(name, value_node, (*prefix, key)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicate_keys(name, item, (*prefix, str(i))))
    return out


def _key(loc: tuple[int | str, ...]) -> str:
    """The dotted key of an error location, without pydantic's union member tags."""
    parts: list[str] = []
    annotation: Any = Config
    for part in loc:
        model = _model_of(annotation)
        if model is not None:
            # An unknown key (extra_forbidden) is the last part.
            field = model.model_fields.get(str(part))
            annotation = field.annotation if field is not None else None
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]  # an index or a key into it
        else:
            break  # a union member's tag, or below a plain value
        parts.append(str(part))
    return ".".join(parts)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _where(
    name: str,
    root: yaml.Node | None,
    loc: tuple[int | str, ...],
    origins: dict[tuple[str, ...], str],
    error_type: str,
) -> str:
    keys = tuple(str(p) for p in loc)
    for origin, var in origins.items():
        if keys[: len(origin)] == origin or origin[: len(keys)] == keys:
            return var
    if root is None:
        return name
    node = root
    for part in loc:
        found = _child(node, part, key_node=error_type == "extra_forbidden" and part == loc[-1])
        if found is None:
            break  # missing below here: point at the mapping that lacks it
        node = found
    return _at(name, node)


def _child(node: yaml.Node, part: int | str, key_node: bool) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in reversed(node.value):  # the last of duplicate keys is the one loaded
            if str(k.value) == str(part):
                found: yaml.Node = k if key_node else v
                return found
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node = node.value[part]
        return child
    return None
