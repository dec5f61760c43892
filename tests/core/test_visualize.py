"""Colours follow class names (distinct, stable, order-free) and pictures are scaled to be legible."""

from __future__ import annotations

import numpy as np

from ovframe.visualize import PRIMARY, _srgb_to_lab, class_colours, display_scale, distinct_colours

README_VOCAB = ["red star", "blue circle", "purple heart", "grass", "sky", "water", "lava"]


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(_srgb_to_lab(a.astype(float)) - _srgb_to_lab(b.astype(float)), axis=-1)


def test_lab_conversion_matches_known_values():
    # sRGB white, black and pure red in CIELAB (D65): published reference values
    lab = _srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]]))
    np.testing.assert_allclose(lab, [[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20]], atol=0.1)


def test_the_palette_is_distinct_and_each_prefix_is_the_same():
    colours = distinct_colours(256)
    assert np.array_equal(distinct_colours(PRIMARY), colours[:PRIMARY])
    primary = colours[:PRIMARY]
    d = delta_e(primary[:, None], primary[None, :]) + np.eye(PRIMARY) * 1e9
    assert d.min() > 30  # the colours names hash into are far apart
    lab = _srgb_to_lab(colours.astype(float))
    assert lab[:, 0].min() >= 30 and lab[:, 0].max() <= 88  # never near the white outlines or black text
    assert len({tuple(c) for c in colours.tolist()}) == 256


def test_colours_follow_names_not_positions():
    colours = dict(zip(README_VOCAB, class_colours(README_VOCAB).tolist()))
    shuffled = README_VOCAB[::-1]
    assert dict(zip(shuffled, class_colours(shuffled).tolist())) == colours  # order does not matter
    assert delta_e(np.array(colours["red star"]), np.array(colours["lava"])) > 30
    values = np.array(list(colours.values()))
    assert (delta_e(values[:, None], values[None, :]) + np.eye(len(values)) * 1e9).min() > 30
    assert class_colours(["lava", "snow"])[0].tolist() == colours["lava"]  # the same class, another vocabulary
    assert class_colours(["sky", "others"])[1].tolist() == [128, 128, 128]


def test_every_class_of_a_large_vocabulary_gets_its_own_colour():
    names = [f"class {i}" for i in range(847)]
    assert len({tuple(c) for c in class_colours(names).tolist()}) == 847


def test_display_scale():
    assert display_scale(128, 128) == 3.0  # whole factors up: pixels stay square
    assert display_scale(32, 32) == 12.0
    assert display_scale(152, 308) == 3.0  # the 308 x 152 overlay: now 924 x 456
    assert display_scale(600, 800) == 1.0
    assert display_scale(3000, 4000) == 1024 / 4000
    assert display_scale(100, 2000) == 1.0  # a strip: up would pass the long-side limit


def test_overlay_layout_input_beside_prediction_or_above_it_when_wide():
    from ovframe.visualize import overlay

    g = np.random.default_rng(0)
    square = overlay(g.integers(0, 256, (64, 64, 3), dtype=np.uint8), g.integers(0, 3, (64, 64)), ["a", "b", "c"])
    assert square.width > 2 * 384 and 384 <= square.height < 2 * 384  # 64 px shown at 384, side by side
    image = g.integers(0, 256, (200, 900, 3), dtype=np.uint8)
    wide = overlay(image, g.integers(0, 3, (200, 900)), ["a", "b", "c"])
    assert wide.height > 2 * 200 and wide.width < 2 * 900  # 900 x 200 (not scaled): one panel above the other
    top, bottom = np.asarray(wide)[: wide.height // 2, :900], np.asarray(wide)[wide.height // 2 :, :900]
    assert (top != 255).any() and (bottom != 255).any()


def test_a_prediction_shown_alone_starts_at_the_top_with_no_caption():
    """`ovframe serve` shows the prediction alone under its own label ("Prediction", top left) and toolbar
    (top right): a caption above the picture was hidden under that label, one letter showing (found in
    headless Chromium); the legend must stay below the toolbar."""
    from ovframe.visualize import overlay

    g = np.random.default_rng(0)
    image, labels = g.integers(0, 256, (64, 64, 3), dtype=np.uint8), g.integers(0, 2, (64, 64))
    alone = np.asarray(overlay(image, labels, ["a", "b"], show_input=False))
    assert alone.shape[0] == 384  # the picture, scaled 6x, and nothing above or below it
    assert (alone[:, :384] != 255).any(axis=(1, 2)).all()  # every row of the panel is picture, none is caption
    legend = alone[:, 384 + 8 :]
    assert (legend[:20] == 255).all()  # the legend leaves the top free (the page's toolbar sits there, top right)
    both = np.asarray(overlay(image, labels, ["a", "b"]))
    assert both.shape[0] > 384 and (both[:10, :384] == 255).all(axis=-1).mean() > 0.5  # two panels: captioned
