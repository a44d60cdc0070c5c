"""edge.image: the channel swap used at the source and output boundaries, with and without OpenCV."""

import numpy as np
import pytest

from edge import image


@pytest.mark.parametrize("with_opencv", [True, False])
def test_swap_red_blue_reverses_channels_into_a_new_contiguous_array(monkeypatch, with_opencv):
    if not with_opencv:
        monkeypatch.setattr(image, "cv2", None)
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    view = bgr[:, ::2]  # non-contiguous input
    swapped = image.swap_red_blue(view)
    np.testing.assert_array_equal(swapped, view[:, :, ::-1])
    assert swapped.flags.c_contiguous and not np.shares_memory(swapped, bgr)
    np.testing.assert_array_equal(image.swap_red_blue(swapped), view)


def test_swap_red_blue_refuses_other_shapes():
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        image.swap_red_blue(np.zeros((4, 4, 4), np.uint8))


def test_resize_rgb_numpy_fallback_matches_opencv_bilinear(monkeypatch):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    with_opencv = image.resize_rgb(frame, 24, 30)
    monkeypatch.setattr(image, "cv2", None)
    numpy_only = image.resize_rgb(frame, 24, 30)
    assert numpy_only.shape == with_opencv.shape == (24, 30, 3)
    assert np.abs(numpy_only.astype(int) - with_opencv.astype(int)).max() <= 1


def test_frame_as_rgb_is_strict_and_convert_to_rgb_is_lenient():
    with pytest.raises(ValueError, match="uint8"):
        image.frame_as_rgb(np.zeros((4, 4, 3), np.float32))
    assert image.convert_to_rgb(np.full((2, 2, 3), 300.0), "BGR").dtype == np.uint8
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert image.frame_as_rgb(rgba).shape == (2, 2, 3)
