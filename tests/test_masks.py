"""The mask builder against docs/DESIGN.md §3, written out independently per tap."""

import pytest

from pixelcnn.masks import MASK_TYPES, conv_mask, live_rectangle, live_taps


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
    assert live_taps(conv_mask(2, 1, 7, "A", 1)).count == 24  # 24 of 49 taps, the centre empty on one colour
    assert live_taps(conv_mask(2, 1, 3, "B", 1)).count == 5
    assert live_taps(conv_mask(2, 1, 1, "B", 1)) == (0, 0, 0, 0, 1)


# (row0, row1, col0, col1, count) with p = k // 2, written out from docs/DESIGN.md §3 and §6 per mask type
def expected_live_taps(k, mask_type, colors):
    p = k // 2
    centre_empty = mask_type[-1] == "A" and colors == 1
    if k == 1 and (mask_type == "vA" or centre_empty):
        return None
    return {
        "A": (0, p, 0, k - 1, p * k + p + (not centre_empty)),
        "B": (0, p, 0, k - 1, p * k + p + 1),
        "vA": (0, p - 1, 0, k - 1, p * k),
        "vB": (0, p, 0, k - 1, (p + 1) * k),
        "hA": (p, p, 0, p - centre_empty, p + (not centre_empty)),
        "hB": (p, p, 0, p, p + 1),
    }[mask_type]


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mask_type", MASK_TYPES)
@pytest.mark.parametrize("colors", [1, 3])
def test_live_taps_bound_every_kept_tap_as_the_design_says(k, mask_type, colors):
    gated = mask_type[0] in "vh"
    m = conv_mask(6, 5, k, mask_type, colors, gated_out=gated)
    live = live_taps(m)
    kept = {(y, x) for y in range(k) for x in range(k) if m[:, :, y, x].any()}
    want = expected_live_taps(k, mask_type, colors)
    if want is None:  # nothing kept: the zero centre tap
        assert not kept and live == (k // 2, k // 2, k // 2, k // 2, 1)
        return
    assert live == want
    visited = live.offsets()
    assert kept <= set(visited) and visited[-1] in kept  # every kept tap visited, none after the last kept one
    assert live_rectangle(m) == want[:4]


def test_mask_a_blocks_the_centre_for_grey_images():
    assert conv_mask(4, 1, 7, "A", 1)[:, :, 3, 3].sum() == 0
    assert conv_mask(4, 1, 7, "B", 1)[:, :, 3, 3].sum() == 4


@pytest.mark.parametrize("bad", [dict(kernel_size=4), dict(mask_type="C"), dict(colors=0)])
def test_bad_mask_arguments_raise(bad):
    args = dict(out_channels=2, in_channels=2, kernel_size=3, mask_type="A", colors=1) | bad
    with pytest.raises(ValueError):
        conv_mask(**args)
