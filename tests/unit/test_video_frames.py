"""The shared luma plane and the rasterised zones and masks."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.video.frames import Raster, fill, prepare
from devices.registry import FramePolygon

LEFT_HALF = FramePolygon(((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))


@pytest.mark.parametrize(
    ("size", "plane"),
    [((640, 360), (180, 320)), ((1280, 720), (180, 320)), ((1920, 1080), (180, 320)),
     ((640, 480), (180, 240)), ((320, 180), (180, 320))],
)
def test_prepare_downscales_to_the_plane_height(
    size: tuple[int, int], plane: tuple[int, int]
) -> None:
    w, h = size
    frame = np.full((h, w, 3), 90, np.uint8)
    p = prepare(frame)
    assert p.shape == plane
    assert p.source == (h, w)
    assert p.luma.dtype == np.uint8


def test_prepare_takes_grey_frames_and_rejects_others() -> None:
    assert prepare(np.zeros((360, 640), np.uint8)).shape == (180, 320)
    with pytest.raises(ValueError, match="uint8"):
        prepare(np.zeros((360, 640, 3), np.float32))
    with pytest.raises(ValueError, match="BGR"):
        prepare(np.zeros((360, 640, 4), np.uint8))


def test_statistics_leave_out_masked_pixels() -> None:
    frame = np.zeros((360, 640), np.uint8)
    frame[:, 320:] = 200  # left half black, right half bright
    whole = prepare(frame)
    assert whole.lo == 0 and whole.hi == 200
    masked = prepare(frame, masks=Raster([LEFT_HALF]))
    assert masked.lo == masked.hi == 200
    assert masked.spread == 0
    assert masked.mask is not None and masked.keep is not None
    assert masked.mask[:, :150].all() and not masked.mask[:, 170:].any()


def test_boxes_map_back_to_frame_and_relative_coordinates() -> None:
    p = prepare(np.zeros((720, 1280, 3), np.uint8))
    assert p.to_source((32, 18, 64, 36)) == (128, 72, 256, 144)
    assert p.relative((32, 18, 64, 36)) == (0.1, 0.1, 0.2, 0.2)


def test_fill_covers_the_polygon_once_per_shape() -> None:
    mask = fill([LEFT_HALF], (180, 320))
    assert mask.dtype == np.uint8 and not mask.flags.writeable
    assert abs((mask > 0).mean() - 0.5) < 0.01
    raster = Raster([LEFT_HALF])
    assert raster.at((180, 320)) is raster.at((180, 320))
    assert raster.at((90, 160)).shape == (90, 160)
    assert not fill([], (10, 10)).any()


def test_a_large_frame_is_antialiased_into_the_plane() -> None:
    """720p: a 2×2 mean, then the Gaussian pyramid. Sensor noise averages out (over 16
    frame pixels or more) and the picture is what the full pyramid makes of it."""
    import cv2

    rng = np.random.default_rng(5)
    noise = np.clip(128 + rng.normal(0, 10, (720, 1280)), 0, 255).astype(np.uint8)
    plane = prepare(noise).luma
    assert plane.shape == (180, 320)
    assert plane.std() < 10 / 4 and abs(float(plane.mean()) - 128) < 0.5
    y, x = np.mgrid[0:720, 0:1280]
    picture = (128 + 60 * np.sin(x / 40.0) * np.cos(y / 30.0)).astype(np.uint8)
    pyramid = cv2.pyrDown(cv2.pyrDown(picture)).astype(np.float32)
    assert np.abs(prepare(picture).luma.astype(np.float32) - pyramid).mean() < 1.0


def test_plane_keep_is_the_inverse_of_its_mask_made_once() -> None:
    raster = Raster([LEFT_HALF])
    frame = np.zeros((360, 640), np.uint8)
    a, b = prepare(frame, masks=raster), prepare(frame, masks=raster)
    assert a.keep is b.keep and a.keep is not None
    assert np.array_equal(a.keep, 255 - a.mask)
    assert a.visible == int(np.count_nonzero(a.keep))
    assert prepare(frame).keep is None and prepare(frame).visible == 180 * 320
