"""PixArt bucket tables and the nearest-bucket rule, against PixArt's own definition."""

import pytest

from schemas.buckets import ASPECT_RATIO_1024, TABLES, closest_bucket


def pixart_rule(h: float, w: float, table: dict) -> str:
    """PixArt's get_closest_ratio written out plainly: first key (ascending) with the least |key - h/w|."""
    ratio = h / w
    keys = sorted(table, key=float)
    best = keys[0]
    for k in keys:
        if abs(float(k) - ratio) < abs(float(best) - ratio):
            best = k
    return best


def test_tables_have_pixart_shape():
    assert len(ASPECT_RATIO_1024) == 40
    assert ASPECT_RATIO_1024["0.25"] == [512, 2048] and ASPECT_RATIO_1024["4.0"] == [2048, 512]
    for size, factor in ((256, 0.25), (512, 0.5), (2048, 2)):
        assert TABLES[size]["1.0"] == [int(1024 * factor)] * 2
        assert TABLES[size].keys() == ASPECT_RATIO_1024.keys()


@pytest.mark.parametrize("h, w, expected", [
    (1024, 1024, "1.0"), (2160, 3840, "0.57"), (3840, 2160, "1.75"), (1000, 8000, "0.25"), (9000, 1000, "4.0"),
    (1, 4, "0.25"), (1080, 1920, "0.57"),
])
def test_known_sizes(h, w, expected):
    assert closest_bucket(h, w)[0] == expected


def test_matches_pixart_rule_on_a_sweep_including_ties():
    for h in range(256, 4097, 37):
        for w in range(256, 4097, 53):
            assert closest_bucket(h, w)[0] == pixart_rule(h, w, ASPECT_RATIO_1024)
    # 0.51 is as near to 0.5 as to 0.52 (up to float rounding): whatever PixArt picks, we pick
    assert closest_bucket(51, 100)[0] == pixart_rule(51, 100, ASPECT_RATIO_1024)
    assert closest_bucket(100, 200, 2048)[1] == [1408, 2816]
