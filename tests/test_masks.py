"""The mask builder against docs/DESIGN.md §3, written out independently per tap."""

import pytest

from pixelcnn.masks import conv_mask, live_taps


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("colors", [1, 3])
def test_mask_matches_rule_tap_by_tap(k, mask_type, colors):
    cout, cin = 7, 5
    m = conv_mask(cout, cin, k, mask_type, colors)
    c = k // 2
    for o in range(cout):
        for i in range(cin):
            for y in range(k):
                for x in range(k):
                    if y < c or (y == c and x < c):
                        want = 1.0
                    elif y == c and x == c:
                        gi, go = i % colors, o % colors
                        want = float(gi < go if mask_type == "A" else gi <= go)
                    else:
                        want = 0.0
                    assert m[o, i, y, x] == want, (o, i, y, x)


def test_live_tap_counts_match_the_issue():
    assert len(live_taps(7, "A", 1)) == 24 and len(live_taps(3, "B", 1)) == 5 and live_taps(1) == [(0, 0)]
    for mask_type in "AB":
        for colors in (1, 3):
            m = conv_mask(3, 3, 7, mask_type, colors).amax(dim=(0, 1))
            assert {(y - 3, x - 3) for y in range(7) for x in range(7) if m[y, x]} == set(
                live_taps(7, mask_type, colors)
            )


def test_mask_a_blocks_the_centre_for_grey_images():
    assert conv_mask(4, 1, 7, "A", 1)[:, :, 3, 3].sum() == 0
    assert conv_mask(4, 1, 7, "B", 1)[:, :, 3, 3].sum() == 4


@pytest.mark.parametrize("bad", [dict(kernel_size=4), dict(mask_type="C"), dict(colors=0)])
def test_bad_mask_arguments_raise(bad):
    args = dict(out_channels=2, in_channels=2, kernel_size=3, mask_type="A", colors=1) | bad
    with pytest.raises(ValueError):
        conv_mask(**args)
