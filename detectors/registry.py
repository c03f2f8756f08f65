"""Detectors registered by key, each with its typed config model and a builder.

Adding a detector is a new module that calls :func:`register`; the engine never names one.
A key is a *configured concern* (``residual_current``, ``pressure_drop``, …); several keys may
share one implementation (``threshold``, ``trend``) with different configs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from devices.profiles import DeviceProfile


class DetectorConfig(BaseModel):
    """Base of every detector's config: unknown keys are errors, every field is described."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run this detector for the device.")


C = TypeVar("C", bound=DetectorConfig)

Builder = Callable[[C, DeviceProfile], Any]
"""Makes the detector object from its validated config and the device's profile."""


@dataclass(frozen=True, slots=True)
class DetectorType(Generic[C]):
    key: str
    config: type[C]
    build: Builder[C]
    summary: str


class UnknownDetector(KeyError):
    """No detector is registered under this key."""


_REGISTRY: dict[str, DetectorType[Any]] = {}


def register(key: str, config: type[C], build: Builder[C], summary: str) -> DetectorType[C]:
    """Make a detector known under ``key``; registering a key twice replaces the earlier one."""
    entry = DetectorType(key=key, config=config, build=build, summary=summary)
    _REGISTRY[key] = entry
    return entry


def get(key: str) -> DetectorType[Any]:
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownDetector(key) from None


def registered() -> list[str]:
    return sorted(_REGISTRY)
