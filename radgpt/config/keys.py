"""Every configuration key with its type, default and help text, read off the pydantic classes:
what `radgpt config keys` prints and docs/config.md lists.

    radgpt config docs > docs/config.md    # tests/test_config_keys.py keeps the file current

A key is a dotted leaf of Config ("draft.n_best"); a mapping such as spark.conf is one key.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from radgpt.config import ENV_PREFIX, Config


@dataclass(frozen=True)
class Key:
    name: str  # dotted, e.g. "draft.n_best"
    type: str  # e.g. "int >= 1", "'auto' | 'ray' | 'local'", "str | null"
    default: Any  # as JSON (a mapping or list stays one value)
    help: str


def _section(ann: Any) -> type[BaseModel] | None:
    return ann if inspect.isclass(ann) and issubclass(ann, BaseModel) else None


def _type(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else _type(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return getattr(ann, "__name__", str(ann))


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _bounds(f: FieldInfo) -> str:
    out = []
    for m in f.metadata:
        for attr, op in _BOUNDS.items():
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{op} {v}")
        if getattr(m, "pattern", None):
            out.append(f"matching {m.pattern}")
    return ", ".join(out)


def keys(cls: type[BaseModel] = Config, prefix: str = "") -> list[Key]:
    """The leaf keys of `cls` in declaration order (sections flattened, their own keys inline)."""
    out: list[Key] = []
    defaults = cls().model_dump(mode="json")
    for name, f in cls.model_fields.items():
        sub = _section(f.annotation)
        if sub is not None:
            out += keys(sub, f"{prefix}{name}.")
            continue
        t, b = _type(f.annotation), _bounds(f)
        out.append(Key(prefix + name, f"{t} {b}" if b else t, defaults[name], f.description or ""))
    return out


def sections() -> list[tuple[str, str]]:
    """(section name, its field's description) in Config order."""
    return [
        (name, " ".join((f.description or "").split()))
        for name, f in Config.model_fields.items()
        if _section(f.annotation) is not None
    ]


def matches(name: str, prefix: str) -> bool:
    """A key named by a prefix of `radgpt config keys`: the key itself or a section above it."""
    return name == prefix or name.startswith(prefix.rstrip(".") + ".")


def values(cfg: Config) -> dict[str, Any]:
    """{dotted key: value as JSON} of a resolved config."""

    def flat(tree: dict, prefix: str, cls: type[BaseModel]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, f in cls.model_fields.items():
            sub = _section(f.annotation)
            if sub is not None:
                out |= flat(tree[name], f"{prefix}{name}.", sub)
            else:
                out[prefix + name] = tree[name]
        return out

    return flat(cfg.model_dump(mode="json"), "", Config)


def env_name(key: str) -> str:
    """The environment variable that sets a key (radgpt.config.load_config reads it back)."""
    return ENV_PREFIX + key.upper().replace(".", "__")


def show(v: Any) -> str:
    """A value as it is written after --set (JSON; so null, true, "text")."""
    return json.dumps(v)


def listing(cfg: Config, prefixes: list[str] = (), changed: bool = False, width: int = 100) -> str:
    """Text of `radgpt config keys`: each key = its value, "(default ...)" when it differs,
    the resolved location of path keys, then its help indented."""
    vals, lines = values(cfg), []
    for k in keys():
        if prefixes and not any(matches(k.name, p) for p in prefixes):
            continue
        v = vals[k.name]
        if changed and v == k.default:
            continue
        head = f"{k.name} = {show(v)}"
        if v != k.default:
            head += f"   (default {show(k.default)})"
        if k.name.startswith("paths."):
            head += f"   -> {cfg.path(k.name.split('.', 1)[1])}"
        lines.append(head)
        text = f"({k.type}) {k.help}; env {env_name(k.name)}"
        lines += textwrap.wrap(text, width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def markdown() -> str:
    """docs/config.md: one table per section, every key with its type, default and help."""
    by = {}
    for k in keys():
        by.setdefault(k.name.split(".")[0] if "." in k.name else "", []).append(k)
    out = [
        "# Configuration keys",
        "",
        "<!-- generated by `radgpt config docs > docs/config.md` from radgpt/config; do not edit -->",
        "",
        "Set a key in a YAML file (`--config`, conf/local.yaml shows the layout), with an "
        "environment variable `RADGPT__SECTION__KEY=value` or with `--set section.key=value` "
        "(that order, the last wins; values are YAML). `radgpt config keys [PREFIX]` prints the "
        "resolved value of each key beside its default; `radgpt config show` the whole config.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]

    def row(k: Key) -> str:
        return f"| `{k.name}` | {_cell(k.type)} | `{_cell(show(k.default))}` | {_cell(k.help)} |"

    out += [row(k) for k in by.pop("", [])]
    for name, doc in sections():
        out += ["", f"## {name}", ""] + ([doc, ""] if doc else [])
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        out += [row(k) for k in by.get(name, [])]
    return "\n".join(out) + "\n"
