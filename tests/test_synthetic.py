"""The synthetic AVA (ilgnet.data.synthetic): its photos' quality changes fastest at AVA1's cut, so the label the
votes give shows in the pixels, and a set made with another rendering is made again."""
from __future__ import annotations

import cv2
import numpy as np

from ilgnet.data import synthetic
from ilgnet.fileio import atomic_write_json, read_json


def test_quality_is_even_at_the_ava1_cut_and_clear_on_either_side():
    assert synthetic.quality_of(5.0) == 0.5                 # AVA1, delta 0: high above a mean score of 5
    assert synthetic.quality_of(4.7) < 0.3 < 0.7 < synthetic.quality_of(5.3)
    assert synthetic.quality_of(4.0) < 0.05 and synthetic.quality_of(5.9) > 0.9      # AVA2's cuts, about


def test_a_photo_of_higher_quality_is_more_colourful():
    def saturation(quality: float, seed: int) -> float:
        photo = synthetic.render_photo(np.random.default_rng(seed), quality, 200, 150)
        return float(cv2.cvtColor(photo, cv2.COLOR_BGR2HSV)[..., 1].mean())
    for seed in range(3):
        assert saturation(synthetic.quality_of(5.3), seed) > saturation(synthetic.quality_of(4.7), seed)


def test_a_set_of_another_rendering_is_not_complete(tmp_path):
    synthetic.generate(tmp_path, n_images=4, seed=2, long_sides=(60, 80), jobs=1)
    assert synthetic.is_complete(tmp_path, n_images=4, seed=2)
    stamp = read_json(tmp_path / synthetic.STAMP)
    atomic_write_json(tmp_path / synthetic.STAMP, {k: v for k, v in stamp.items() if k != "rendering"})
    assert not synthetic.is_complete(tmp_path, n_images=4, seed=2)


def test_the_ava1_classes_are_about_even():
    counts = synthetic.vote_histograms(np.random.default_rng(1), 2000)
    means = (counts * np.arange(1, 11)).sum(axis=1) / counts.sum(axis=1)
    assert 0.4 < (means > 5).mean() < 0.6                   # "always high" scores about half, not AVA's 70 %
