import numpy as np
import pytest

from occtool.errors import ConfigError
from occtool.visualize.regions import region_error, region_summary, region_visibility, worst_order


def _maps():
    a = np.ones((7, 7))
    b = np.ones((7, 7))
    b[4:] = 0.0  # lower face occluded
    c = np.ones((7, 7))
    c[1:3] = 0.2  # eyes occluded
    c[3] = 0.6
    return np.stack([a, b, c])[:, None]  # [3, 1, 7, 7]


def test_region_rows_and_means():
    v = _maps()
    np.testing.assert_allclose(region_visibility(v, "lower"), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(region_visibility(v, "eyes"), [1.0, 1.0, 0.2])
    np.testing.assert_allclose(region_visibility(v, "nose"), [1.0, 1.0, 0.6])
    np.testing.assert_allclose(region_visibility(v, "all"), [1.0, 28 / 49, (49 - 14 * 0.8 - 7 * 0.4) / 49])


def test_region_summary_hand_computed():
    s = region_summary(_maps())
    assert s["lower"]["mean_visibility"] == pytest.approx(2 / 3)
    assert s["lower"]["occluded_fraction"] == pytest.approx(1 / 3)
    assert s["eyes"]["mean_visibility"] == pytest.approx((1 + 1 + 0.2) / 3)
    assert s["eyes"]["occluded_fraction"] == pytest.approx(1 / 3)
    assert s["nose"]["occluded_fraction"] == 0.0


def test_worst_order_with_and_without_truth():
    v = _maps()
    gt = np.ones((3, 7, 7))
    gt[:, 4:] = 0.0  # every face should have the lower face occluded
    np.testing.assert_allclose(region_error(v, gt, "lower"), [1.0, 0.0, 1.0])
    assert worst_order(v, region="lower", gt=gt).tolist() == [0, 2, 1]  # ties keep input order
    assert worst_order(v, region="eyes", expect="visible").tolist() == [2, 0, 1]
    assert worst_order(v, region="lower", expect="occluded").tolist() == [0, 2, 1]
    with pytest.raises(ConfigError, match="expect"):
        worst_order(v, region="lower")
    with pytest.raises(ConfigError, match="unknown region"):
        region_visibility(v, "chin")
