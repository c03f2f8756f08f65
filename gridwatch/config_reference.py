"""Renders docs/configuration.md from the config model, so the reference cannot drift from
the code (a unit test compares the two)."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gridwatch.config import ENV_PREFIX, Section, Settings

HEADER = """# Configuration reference

gridwatch reads one TOML file (`gridwatch --config gridwatch.toml run`), then environment
variables `GRIDWATCH_<SECTION>_<KEY>` (they win over the file), then these defaults. An
unknown key in the file or an unknown `GRIDWATCH_*` variable stops start-up with a message
naming it. `gridwatch config show` prints the effective settings, secrets masked.

This page is generated from the code: `gridwatch config reference > docs/configuration.md`.
"""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "—"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, set | frozenset):
        return f"`{sorted(value)}`"  # a set's order changes from run to run
    return f"`{value}`"


def _type(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pydantic.types.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("pathlib.", "")
    return text.replace("|", "\\|")


def _rows(model: type[BaseModel], section: str | None) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{section}.{name}" if section else name
        env = f"{ENV_PREFIX}{section}_{name}".upper() if section else f"{ENV_PREFIX}{name}".upper()
        if "." in key:
            env = "—"  # nested tables are set in the file
        meaning = field.description or ""
        rows.append(f"| `{key}` | `{env}` | {_type(field)} | {_default(field)} | {meaning} |")
    return rows


def _nested(model: type[BaseModel], prefix: str) -> list[str]:
    """Sub-tables for fields that are models themselves (``[alerts.correlation]`` …)."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            key = f"{prefix}.{name}"
            out.append(f"\n### [{key}]\n")
            if sub.__doc__:
                out.append(" ".join(sub.__doc__.split()) + "\n")
            out.append("| key | environment | type | default | meaning |")
            out.append("| --- | --- | --- | --- | --- |")
            out.extend(_rows(sub, key))
            out.extend(_nested(sub, key))
    return out


def render() -> str:
    out = [HEADER]
    top = [
        name
        for name, f in Settings.model_fields.items()
        if not (isinstance(f.annotation, type) and issubclass(f.annotation, Section))
    ]
    out.append("## Top level\n")
    out.append("| key | environment | type | default | meaning |")
    out.append("| --- | --- | --- | --- | --- |")
    for row in _rows(Settings, None):
        if any(row.startswith(f"| `{name}`") for name in top):
            out.append(row)
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, Section):
            out.append(f"\n## [{name}]\n")
            if model.__doc__:
                out.append(model.__doc__.strip() + "\n")
            out.append("| key | environment | type | default | meaning |")
            out.append("| --- | --- | --- | --- | --- |")
            out.extend(_rows(model, name))
            out.extend(_nested(model, name))
    return "\n".join(out) + "\n"
