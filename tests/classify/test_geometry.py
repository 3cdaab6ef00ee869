import numpy as np
import pytest

from occtool.classify.geometry import INPUT_SIZE, crop_face, grown_box, template_face_box, to_input
from occtool.errors import ShapeError


def test_box_grows_by_30_percent_inside_the_frame():
    # box 100x50 at (200, 100): +30 px left/right, +15 px top/bottom
    assert grown_box((200, 100, 300, 150), (1000, 1000)) == (170, 85, 330, 165)


@pytest.mark.parametrize(
    "box, expected",
    [
        ((0, 0, 50, 40), (0, 0, 65, 52)),  # top-left corner: clipped at 0
        ((90, 70, 120, 100), (81, 61, 128, 100)),  # bottom-right: clipped to W=128, H=100
        ((-20, -10, 30, 20), (0, 0, 45, 29)),  # box partly outside the frame
        ((-50, -50, 200, 200), (0, 0, 128, 100)),  # larger than the frame: the whole frame
    ],
)
def test_box_is_clipped_at_frame_borders(box, expected):
    assert grown_box(box, (100, 128)) == expected


def test_box_outside_the_frame_or_degenerate_is_an_error():
    with pytest.raises(ShapeError, match="outside"):
        grown_box((500, 500, 600, 600), (100, 100))
    with pytest.raises(ShapeError, match="x2 > x1"):
        grown_box((10, 10, 5, 20), (100, 100))
    with pytest.raises(ShapeError):
        grown_box((1, 2, 3), (100, 100))


@pytest.mark.parametrize("size", [(112, 112), (224, 224), (112, 96)])
def test_template_box_of_an_aligned_crop_gives_the_whole_image(size):
    assert grown_box(template_face_box(size), size) == (0, 0, size[1], size[0])


def test_crop_takes_exactly_the_grown_box_and_resizes_to_224():
    image = np.zeros((100, 128, 3), np.uint8)
    image[61:100, 81:128] = 200  # exactly the grown, clipped box of the bottom-right case
    crop = crop_face(image, (90, 70, 120, 100))
    assert crop.shape == (INPUT_SIZE, INPUT_SIZE, 3) and crop.dtype == np.uint8
    assert (crop == 200).all()


def test_to_input_normalises_to_minus_one_one():
    crops = np.stack([np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)])
    x = to_input(crops)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    assert np.allclose(x[0], -1.0) and np.allclose(x[1], 1.0)
    crops[0, 0, 0] = (51, 102, 204)
    assert np.allclose(to_input(crops)[0, :, 0, 0], (np.array([51, 102, 204]) / 255 - 0.5) / 0.5)
