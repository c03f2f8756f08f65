"""Zone intrusion and loitering, from the motion boxes of each sampled frame.

Zones are the camera's registry polygons (0–1 frame coordinates), named ``zone1``, ``zone2``…
in registry order. A motion box is *in* a zone when its foot point (bottom centre: where a
person stands) is inside it, or with ``anchor = "overlap"`` when at least ``min_overlap`` of
the box lies inside. Before that, :func:`stand` gives a box whose lower part faded (legs in
the colour of the road, behind rain, in the dark) the bottom its track reached
(``keep_height_s``), so that the foot point stays where the person stands.

- ``zone_intrusion`` is raised when a box is in the zone for ``persist_frames`` consecutive
  frames, each box *continuing* one of the frame before (overlapping it once grown by
  ``continuity`` × its size, of a similar area): rain, insects and noise flicker in and out at
  random places and do not build a streak. It clears after ``clear_frames`` frames in which
  no box in the zone carries on from the last one seen there (the reach grows with the gap;
  a box mostly over that one carries on whatever its size: parts of a body fade and return).
- ``loitering`` is raised when that presence has lasted ``dwell_s`` (gaps shorter than the
  clear delay included) and clears with it.
- A camera without zones reports ``motion`` over the whole unmasked picture, with the same
  persistence (``motion_without_zones``).

Hits: detector ``video_zone``, rules ``intrusion`` / ``loitering`` / ``motion``, the zone name
as the condition's metric (``CAM-1/video_zone/intrusion/zone1``), category ``video``.
Evidence: the zone, the box (0–1 and frame pixels), frames seen, first seen and, on a clear,
how long it lasted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field

from detectors.base import CLEARED, RAISED, Hit, Label, Severity
from detectors.registry import DetectorConfig
from detectors.video.frames import Plane, Raster
from detectors.video.motion import Box
from devices.registry import FramePolygon

WHOLE_FRAME = FramePolygon(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))


class ZoneConfig(DetectorConfig):
    """Persistence and dwell of zone intrusion, loitering and whole-picture motion."""

    persist_frames: int = Field(
        3, ge=1, description="Consecutive sampled frames with a continuing box in a zone "
        "before zone_intrusion is raised."
    )
    clear_frames: int = Field(
        10, ge=1, description="Consecutive sampled frames without a box in the zone to clear."
    )
    dwell_s: float = Field(
        20.0, gt=0, description="Continuous presence (s) in a zone that is loitering."
    )
    anchor: Literal["foot", "overlap"] = Field(
        "foot", description="A box is in a zone by its foot point, or by its overlap."
    )
    min_overlap: float = Field(
        0.3, gt=0, le=1, description="With anchor 'overlap': share of the box inside the zone."
    )
    keep_height_s: float | None = Field(
        5.0, gt=0,
        description="A box that carries on a track of boxes but ends above where they reached "
        "keeps that bottom for this long (s; while it stays in place, longer): its lower part "
        "faded (legs in the colour of the road, in rain or in the dark) and the foot point "
        "stays where the person stands; null: off.",
    )
    continuity: float = Field(
        0.5, ge=0, description="A box continues one of the previous frame when it overlaps it "
        "grown by this many times its larger side (and their areas are within 3×)."
    )
    motion_without_zones: bool = Field(
        True, description="A camera without zones reports 'motion' anywhere in the picture."
    )
    intrusion_severity: Severity = Field("orange", description="Suggested severity.")
    loitering_severity: Severity = Field("yellow", description="Suggested severity.")
    motion_severity: Severity = Field("yellow", description="Suggested severity.")


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    polygon: FramePolygon


def named_zones(polygons: Sequence[FramePolygon]) -> tuple[Zone, ...]:
    """Registry zones by their names: ``zone1``, ``zone2``… in order."""
    return tuple(Zone(f"zone{i + 1}", p) for i, p in enumerate(polygons))


@dataclass(frozen=True, slots=True)
class ZoneTrack:
    """Presence in one zone: the streak building up, or the open condition and its gap."""

    streak: int = 0
    absent: int = 0
    active: bool = False
    since: float | None = None
    loitering: bool = False
    boxes: tuple[Box, ...] = ()
    chains: tuple[tuple[int, float], ...] = ()  # per box while building: frames, first seen


ZoneState = tuple[ZoneTrack, ...]


@dataclass(frozen=True, slots=True)
class Figure:
    """A box as the zones judge it (its bottom possibly kept) and the two lowest-reaching boxes
    of its track, as (bottom, when, top, x0 + x1)."""

    box: Box
    lowest: tuple[tuple[int, float, int, int], ...]
    step: int = 0  # how far (x0 + x1) moved since the frame before: where to look next


def stand(boxes: Sequence[Box], before: Sequence[Figure], ts: float, cfg: ZoneConfig,
          rows: int) -> tuple[tuple[Box, ...], tuple[Figure, ...]]:
    """Where the figures of this frame stand. A box that carries on from a figure of the frame
    before (``continuity``, and over half the narrower one's width: the same column) follows
    its track, which remembers the two boxes of the last ``keep_height_s`` (or of any time
    while it stays within half its width of where they were seen) that reached lowest. When
    the box ends above the second of them (one low frame may be a merge with a beam or rain
    below; twice is the feet), its top is not above that box's by more than an eighth of that
    box's height, and it is 40–80 % of the height it would have (a few pixels less are only
    the blur), it keeps that bottom: its lower part faded into the road, the rain or the dark,
    and its foot point stays where the figure stands. The column is judged where the figure
    would be at the pace it kept from the frame before, too: someone hurrying past moves
    more than half their width between sampled frames. ``rows``: the plane's height."""
    keep = cfg.keep_height_s
    figures = []
    for b in boxes:
        seen = [(b.y1, ts, b.y0, b.x0 + b.x1)]
        track = None
        if keep is not None:
            for f in before:
                across = max(_across(b, f.box, 0), _across(b, f.box, f.step))
                if (2 * across >= min(b.x1 - b.x0, f.box.x1 - f.box.x0)
                        and f.box.continues(b, cfg.continuity)
                        and (track is None or f.lowest[0][0] > track.lowest[0][0])):
                    track = f
            if track is not None:  # still where it was seen, or not long ago
                mid = b.x0 + b.x1
                seen += [entry for entry in track.lowest if ts - entry[1] <= keep
                         or abs(mid - entry[3]) <= b.x1 - b.x0]
        lowest = tuple(sorted(seen, key=lambda e: (-e[0], -e[1]))[:2])
        bottom, _, top, _ = lowest[-1]
        box = b
        if (b.y0 >= top - (bottom - top) / 8
                and 0.4 * (bottom - b.y0) <= b.y1 - b.y0 <= 0.8 * (bottom - b.y0)):
            box = Box(b.x0, b.y0, b.x1, min(rows, bottom), b.area)
        step = (b.x0 + b.x1) - (track.box.x0 + track.box.x1) if track is not None else 0
        figures.append(Figure(box, lowest, step))
    return tuple(f.box for f in figures), tuple(figures)


def _across(b: Box, before: Box, step: int) -> int:
    """How much of ``b``'s width lies over ``before`` moved on by ``step`` / 2 (where a figure
    walking at the same pace is a frame later: one that walks farther than half its width
    between frames is still the same column once its pace is allowed for)."""
    shift = step // 2
    return min(b.x1, before.x1 + shift) - max(b.x0, before.x0 + shift)


class ZoneDetector:
    key = "video_zone"

    def __init__(
        self, device_id: str, zones: Sequence[Zone], cfg: ZoneConfig | None = None
    ) -> None:
        self.device_id = device_id
        self.cfg = cfg = cfg or ZoneConfig()
        self.motion_only = not zones
        if self.motion_only:
            zones = (Zone("frame", WHOLE_FRAME),) if cfg.motion_without_zones else ()
        self.zones = tuple(zones)
        self._rasters = tuple(Raster((z.polygon,)) for z in self.zones)
        if self.motion_only:
            self.presence = Label("motion", "video", cfg.motion_severity)
        else:
            self.presence = Label("zone_intrusion", "video", cfg.intrusion_severity)
        self.loiter = Label("loitering", "video", cfg.loitering_severity)
        self.rule = "motion" if self.motion_only else "intrusion"

    def initial_state(self) -> ZoneState:
        return tuple(ZoneTrack() for _ in self.zones)

    def on_boxes(
        self, boxes: Sequence[Box], plane: Plane, state: ZoneState, ts: float
    ) -> tuple[ZoneState, tuple[Hit, ...]]:
        """One sampled frame's motion boxes."""
        if len(state) != len(self.zones):
            state = self.initial_state()
        hits: list[Hit] = []
        tracks = []
        for zone, raster, track in zip(self.zones, self._rasters, state, strict=True):
            mask = raster.at(plane.shape)
            inside = tuple(b for b in boxes if self._inside(b, mask))
            tracks.append(self._step(zone, track, inside, plane, ts, hits))
        return tuple(tracks), tuple(hits)

    def hold(self, state: ZoneState) -> ZoneState:
        """A frame in which motion could not look (its background restarting after a global
        change: lights switched, a beam flooded the picture): an open condition is neither
        gone nor back, so its absence does not grow (a restart and the light before it would
        otherwise clear someone standing through it); a streak still building starts over,
        as its boxes may have been the change itself."""
        return tuple(track if track.active else ZoneTrack() for track in state)

    def clear_all(
        self, state: ZoneState, ts: float, reason: str
    ) -> tuple[ZoneState, tuple[Hit, ...]]:
        """Close every open condition (the picture is gone: unreachable, covered, frozen)."""
        hits: list[Hit] = []
        for zone, track in zip(self.zones, state, strict=False):
            if track.active:
                hits.extend(self._clear(zone, track, ts, reason))
        return self.initial_state(), tuple(hits)

    def _step(self, zone: Zone, track: ZoneTrack, inside: tuple[Box, ...], plane: Plane,
              ts: float, hits: list[Hit]) -> ZoneTrack:
        cfg = self.cfg
        if track.active:  # present while a box carries on from the last one seen
            reach = cfg.continuity * (1 + track.absent)
            going = tuple(b for b in inside
                          if any(p.continues(b, reach) or p.over(b) for p in track.boxes))
            if not going:
                if track.absent + 1 >= cfg.clear_frames:
                    hits.extend(self._clear(zone, track, ts, "left"))
                    return ZoneTrack()
                track = replace(track, absent=track.absent + 1)
            else:
                track = replace(track, absent=0, boxes=going, chains=())
        elif not inside:
            return ZoneTrack()
        else:  # each box carries on the longest chain of boxes it continues
            chains = []
            for b in inside:
                frames, first = 1, ts
                for p, (n, start) in zip(track.boxes, track.chains, strict=True):
                    if n + 1 > frames and p.continues(b, cfg.continuity):
                        frames, first = n + 1, start
                chains.append((frames, first))
            streak, since = max(chains, key=lambda c: c[0])
            track = ZoneTrack(streak=streak, since=since, boxes=inside, chains=tuple(chains))
            if streak >= cfg.persist_frames:
                track = replace(track, active=True, chains=())
                hits.append(self._hit(self.presence, self.rule, zone, RAISED, ts,
                                      self._evidence(zone, inside, plane, track)))
        if (track.active and not track.loitering and not self.motion_only
                and track.since is not None and ts - track.since >= cfg.dwell_s):
            track = replace(track, loitering=True)
            hits.append(self._hit(self.loiter, "loitering", zone, RAISED, ts,
                                  self._evidence(zone, inside or track.boxes, plane, track)))
        return track

    def _inside(self, box: Box, mask: Any) -> bool:
        if self.cfg.anchor == "foot":
            x, y = box.foot
            return bool(mask[y, x])
        part = mask[box.y0:box.y1, box.x0:box.x1]
        return bool(part.size) and (part > 0).mean() >= self.cfg.min_overlap

    def _evidence(self, zone: Zone, inside: tuple[Box, ...], plane: Plane,
                  track: ZoneTrack) -> dict[str, Any]:
        box = max(inside, key=lambda b: b.area)
        return {
            "zone": zone.name,
            "box": list(plane.relative(box.rect)),
            "box_px": list(plane.to_source(box.rect)),
            "boxes": len(inside),
            "frames": track.streak,
            "first_seen": track.since,
        }

    def _clear(self, zone: Zone, track: ZoneTrack, ts: float, reason: str) -> list[Hit]:
        lasted = round(ts - track.since, 3) if track.since is not None else None
        evidence = {"zone": zone.name, "reason": reason, "duration_s": lasted}
        out = []
        if track.loitering:
            out.append(self._hit(self.loiter, "loitering", zone, CLEARED, ts, evidence))
        out.append(self._hit(self.presence, self.rule, zone, CLEARED, ts, evidence))
        return out

    def _hit(self, label: Label, rule: str, zone: Zone, phase: Literal["raised", "cleared"],
             ts: float, evidence: dict[str, Any]) -> Hit:
        return label.hit(self.device_id, self.key, rule, phase, ts, metric=zone.name,
                         evidence=evidence)
