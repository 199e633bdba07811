"""Tests of one line's IAM-OnDB XML to a stroke array (`handwriting.iam_xml`).

More hostile files, in every encoding: tests/test_prep_attacks.py.
"""

import time

import iam_fixtures
import numpy as np
import pytest

from handwriting import iam_xml


def test_y_grows_upwards_and_the_first_point_is_the_origin():
    strokes = [np.array([[1000, 500], [1003, 490], [1003, 490]]), np.array([[1010, 520]])]
    x, y, lengths = iam_xml.parse_line_xml(iam_fixtures.line_xml(strokes), "line.xml")
    np.testing.assert_array_equal(lengths, [3, 1])
    array, _ = iam_xml.to_stroke_array(x, y, lengths)
    # Up on the whiteboard (y 500 -> 490) is +10; the dot 20 below the first point is -30.
    np.testing.assert_array_equal(array, [[0, 0, 0], [3, 10, 1], [7, -30, 1]])
    np.testing.assert_array_equal(np.cumsum(array[:, :2], axis=0)[-1], [10, -20])


def test_a_repeat_across_a_stroke_boundary_is_kept_and_dots_stay():
    x = np.array([5.0, 6.0, 6.0, 6.0, 9.0])
    y = np.array([1.0, 2.0, 2.0, 2.0, 4.0])
    array, alignment = iam_xml.to_stroke_array(x, y, [3, 1, 0, 1], alignment=[0, 1, 2, 3, 4])
    # The third point repeats the second within stroke 0 (dropped); the fourth starts a new
    # stroke at the same place (kept: it is a dot); the empty stroke vanishes.
    np.testing.assert_array_equal(array, [[0, 0, 0], [1, -1, 1], [0, 0, 1], [3, -2, 1]])
    np.testing.assert_array_equal(alignment, [0, 1, 3, 4])


@pytest.mark.parametrize(
    "name, reason",
    [
        ("xxe", "unsafe XML"),
        ("billion laughs", "unsafe XML"),
        ("truncated", "malformed XML"),
        ("wrong root", "unexpected XML structure"),
        ("non-numeric x", "bad coordinates"),
        ("empty StrokeSet", "no points"),
    ],
)
def test_hostile_or_broken_xml_is_refused_quickly(name, reason):
    start = time.perf_counter()
    with pytest.raises(iam_xml.LineError, match=r"^hostile-7\.xml: ") as caught:
        iam_xml.parse_line_xml(iam_fixtures.HOSTILE[name], "hostile-7.xml")
    assert caught.value.reason == reason
    assert time.perf_counter() - start < 1.0


def test_a_doctype_hidden_from_the_byte_scan_is_still_refused():
    body = "<!DOCTYPE WhiteboardCaptureSession><WhiteboardCaptureSession><StrokeSet/>"
    body += "</WhiteboardCaptureSession>"
    data = '<?xml version="1.0" encoding="UTF-16"?>'.encode("utf-16-le") + body.encode("utf-16-le")
    with pytest.raises(iam_xml.LineError, match="DOCTYPE") as caught:
        iam_xml.parse_line_xml(b"\xff\xfe" + data, "utf16.xml")
    assert caught.value.reason == "unsafe XML"


def test_missing_coordinates_and_size_cap(monkeypatch):
    data = iam_fixtures.line_xml([np.array([[1, 2], [3, 4], [5, 6]])]).replace(b' y="4"', b"")
    with pytest.raises(iam_xml.LineError, match=r"^m.xml: 1 of 3 <Point> lack `y`$"):
        iam_xml.parse_line_xml(data, "m.xml")
    inf = iam_fixtures.line_xml([np.array([[1, 2], [3, 4]])]).replace(b'x="3"', b'x="inf"')
    with pytest.raises(iam_xml.LineError, match="point 2 has x='inf'"):
        iam_xml.parse_line_xml(inf, "i.xml")
    monkeypatch.setattr(iam_xml, "MAX_LINE_XML_BYTES", 100)
    with pytest.raises(
        iam_xml.LineError, match=r"^big.xml: \d+ bytes, the limit is 100$"
    ) as caught:
        iam_xml.parse_line_xml(data, "big.xml")
    assert caught.value.reason == "file too large"
