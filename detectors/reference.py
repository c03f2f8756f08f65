"""The detector part of the config reference, rendered from the models and type defaults so
it cannot drift from the code: ``python -m detectors.reference``."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

import detectors  # noqa: F401  (registers every detector)
from detectors import defaults, registry
from detectors.config import CLOCK_KEY, OPTIONS_KEY, ClockConfig, merge


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"`{text}`".replace("|", "\\|")


def _type(model: type[BaseModel], name: str) -> str:
    text = str(model.model_fields[name].annotation)
    for noise in ("typing.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("|", "\\|")


def _table(model: type[BaseModel], key: str) -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    dumped = model.model_validate({}).model_dump(mode="json")
    for name, field in model.model_fields.items():
        rows.append(
            f"| `{key}.{name}` | {_type(model, name)} | {_cell(dumped[name])} "
            f"| {field.description or ''} |"
        )
    return rows


def render() -> str:
    out = [
        "# Detector configuration",
        "",
        "Per device type, the detectors listed under *Device types* run with the defaults "
        "below, changed by that type's entries; a device's registry row changes them further "
        f"with `profile.{OPTIONS_KEY}`, e.g. "
        '`{"detectors": {"residual_current": {"alarm_ma": 400}}}`. Mappings merge key by key '
        "(inside a mapping field `null` removes an entry); an unknown key is an error naming it.",
        "",
        f"## `{CLOCK_KEY}` (engine)",
        "",
        ClockConfig.__doc__ or "",
        "",
        *_table(ClockConfig, CLOCK_KEY),
    ]
    for key in registry.registered():
        entry = registry.get(key)
        out += ["", f"## `{key}`", "", entry.summary, "", *_table(entry.config, key)]
    out += ["", "## Device types", ""]
    types = [*defaults.TYPE_DEFAULTS.items(), ("(other types)", defaults.GENERIC)]
    for type_key, partials in types:
        out.append(f"- **{type_key}**: " + (", ".join(f"`{k}`" for k in partials) or "none"))
        for key, partial in partials.items():
            if partial:
                base = registry.get(key).config.model_validate({}).model_dump(mode="json")
                changed = {k: v for k, v in merge(base, partial).items() if base.get(k) != v}
                for name, value in changed.items():
                    out.append(f"  - `{key}.{name}` = {_cell(value)}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
