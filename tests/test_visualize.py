"""Attention maps on hand-made feature maps (paper Eq. 2), the map the CSRA head pools
with, GAP class activation maps, and the numpy/PIL overlays."""

import math

import jax
import numpy as np
import pytest
from PIL import Image

from csra_jax import CSRAHead
from csra_jax.visualize import (attention_grid, class_activation_map, csra_attention,
                                head_attention, jet, overlay, save_attention_images)


def _hand_made():
    """4 x 5 grid, d = 3: class 0 (axis 0) lives at (1, 2), class 1 (axis 1) at (3, 4)."""
    x = np.full((1, 4, 5, 3), 0.1, np.float32)
    x[0, 1, 2] = [3.0, 0.0, 0.0]
    x[0, 3, 4] = [0.0, 2.0, 0.0]
    kernel = np.array([[2.0, 0.0], [0.0, 5.0], [0.0, 0.0]], np.float32)  # (d, C)
    return x, kernel


def test_attention_sums_to_one_and_peaks_where_the_class_is():
    x, kernel = _hand_made()
    att = np.asarray(csra_attention(x, kernel, temperature=1.0))
    assert att.shape == (1, 2, 4, 5)
    np.testing.assert_allclose(att.sum(axis=(2, 3)), 1.0, atol=1e-6)
    assert np.unravel_index(att[0, 0].argmax(), (4, 5)) == (1, 2)
    assert np.unravel_index(att[0, 1].argmax(), (4, 5)) == (3, 4)
    # Eq. 2 by hand: softmax over positions of T * x_k . m_i / ||m_i||.
    m = kernel / np.linalg.norm(kernel, axis=0)
    score = x[0].reshape(20, 3) @ m
    expected = np.exp(score) / np.exp(score).sum(0)
    np.testing.assert_allclose(att[0].reshape(2, 20).T, expected, rtol=1e-5)
    # Scaling m_i changes nothing (normalised), T sharpens, T = inf is one-hot.
    np.testing.assert_allclose(csra_attention(x, kernel * 7, 1.0), att, rtol=1e-5)
    assert float(csra_attention(x, kernel, 4.0)[0, 0, 1, 2]) > float(att[0, 0, 1, 2])
    hard = np.asarray(csra_attention(x, kernel, math.inf))
    assert hard[0, 0, 1, 2] == 1.0 and hard.sum() == 2.0


def test_head_attention_is_what_the_csra_head_pools():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 3, 8)).astype(np.float32)
    head = CSRAHead(num_classes=5, num_heads=1, lam=0.4)
    params = head.init(jax.random.key(0), x)["params"]
    att = np.asarray(head_attention(head, params, x)).reshape(2, 5, 9)
    m = np.asarray(params["kernel"][0])
    score = np.einsum("bnd,dc->bcn", x.reshape(2, 9, 8), m / np.linalg.norm(m, axis=0))
    logits = score.mean(-1) + 0.4 * (att * score).sum(-1)
    np.testing.assert_allclose(head.apply({"params": params}, x), logits, rtol=1e-5, atol=1e-5)


def test_class_activation_map_is_min_max_normalised():
    x, kernel = _hand_made()
    cam = np.asarray(class_activation_map(x, kernel, np.array([5.0, -3.0])))
    assert cam.min() == pytest.approx(0.0) and cam.max() == pytest.approx(1.0)
    assert np.unravel_index(cam[0, 1].argmax(), (4, 5)) == (3, 4)


def test_jet_overlay_and_grid(tmp_path):
    np.testing.assert_array_equal(jet([0.0, 0.5, 1.0]), [[0, 0, 128], [128, 255, 128],
                                                         [128, 0, 0]])
    image = Image.new("RGB", (101, 67), (128, 128, 128))
    att = np.zeros((4, 5), np.float32)
    att[3, 4] = 1.0  # bottom-right
    out = overlay(image, att, alpha=1.0)
    assert out.size == (101, 67)
    arr = np.asarray(out).astype(int)
    assert arr[-1, -1, 0] > 100 and arr[-1, -1, 2] < 10   # red at the peak
    assert arr[0, 0, 2] > 100 and arr[0, 0, 0] < 10       # blue far from it
    grid = attention_grid(image, [att, att], ["a 0.9", "b 0.6"], tile=64)
    assert grid.size[0] == 3 * 64
    paths = save_attention_images(str(tmp_path), "img", image, [att],
                                  [("traffic light", 0.9)])
    assert [p.split("/")[-1] for p in paths] == ["img_traffic_light.png", "img_grid.png"]
    assert Image.open(paths[0]).size == (101, 67)
