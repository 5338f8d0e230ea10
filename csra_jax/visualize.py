"""Where each class looks: the heads' class maps (CSRA attention, paper Eq. 2, Fig. 4)
and overlays.

Every head exposes its maps through ``class_maps`` (``csra_jax.models.head.ClassMaps``).
For a CSRA head the map of class i is the attention the head pools with,

    score_k = x_k · m_i / ||m_i||          (the first head's classifier m_i)
    s_k^i   = softmax_k(T · score_k)       (T: the first head's temperature)

so it sums to 1 over the h x w positions. The first head is the one with T = 1 in every
paper temperature set. If it is T = inf (only with explicit temperatures) the map is the
one-hot argmax: the limit of the softmax and exactly the position that max-pooling head
reads. A GAP head has no attention; its map is the class activation map
``W^T x_k + b`` min-max normalised to [0, 1] per class (CAM, for comparison).

Overlays need only numpy and PIL: a jet colormap blended over the image, the map
upsampled bilinearly to the image size and min-max stretched for display.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from csra_jax.models.csra import attention_weights, class_scores
from csra_jax.models.gap import class_score_map
from csra_jax.models.head import min_max_per_class


# ------------------------------------------------------------------- the maps
def csra_attention(features, kernel, temperature: float = 1.0, normalize: bool = True):
    """Attention scores s_k^i: (B, h, w, d) features, (d, C) kernel -> (B, C, h, w)."""
    features = jnp.asarray(features, jnp.float32)
    b, h, w, _ = features.shape
    score = class_scores(features, jnp.asarray(kernel, jnp.float32)[None], normalize)[:, 0]
    att = attention_weights(score, temperature)  # (B, h*w, C)
    return att.transpose(0, 2, 1).reshape(b, -1, h, w)


def class_activation_map(features, kernel, bias):
    """GAP head: W^T x_k + b per position, min-max normalised per class -> (B, C, h, w)."""
    b, h, w, _ = features.shape
    cam = class_score_map(jnp.asarray(features, jnp.float32), jnp.asarray(kernel, jnp.float32),
                          jnp.asarray(bias, jnp.float32))  # (B, h*w, C)
    return min_max_per_class(cam.reshape(b, h, w, -1))


def head_attention(head, head_variables, features):
    """The map (B, C, h, w) of any head module on backbone features; ``head_variables``
    is its params, or ``{"params", ...}`` for a head with statistics."""
    if "params" not in head_variables:
        head_variables = {"params": head_variables}
    return head.apply(head_variables, features, method="class_maps").attention


def backbone_features(model, variables, images):
    """The backbone's feature map (B, h, w, d) of a ``Classifier`` in eval mode."""
    return model.apply(variables, images, method="features")


def attention_maps(model, variables, images) -> np.ndarray:
    """Normalised images (B, H, W, 3) -> every class's map (B, C, h, w), for notebooks.

    ``csra_jax.inference.Predictor.attention_maps`` does the resizing/normalising too.
    """
    maps = model.apply(variables, jnp.asarray(images), method="class_maps")
    return np.asarray(maps.attention)


# ------------------------------------------------------------------ drawing
def jet(values) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB (..., 3), the classic jet colormap (blue to red)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], np.float32)  # r, g, b
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def upsample(att_map, size) -> np.ndarray:
    """(h, w) map -> (height, width) float32 for ``size=(width, height)``, PIL bilinear."""
    im = Image.fromarray(np.ascontiguousarray(att_map, np.float32))  # mode "F"
    return np.asarray(im.resize(tuple(size), Image.BILINEAR))


def overlay(image, att_map, alpha: float = 0.5) -> Image.Image:
    """The map, resized to the image and stretched to [0, 1], blended over it in jet."""
    base = _as_pil(image)
    m = upsample(att_map, base.size)
    lo, hi = float(m.min()), float(m.max())
    m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    heat = jet(m).astype(np.float32)
    out = (1.0 - alpha) * np.asarray(base, np.float32) + alpha * heat
    return Image.fromarray(np.round(out).astype(np.uint8))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def attention_grid(image, maps: Sequence, captions: Sequence[str], tile: int = 256,
                   alpha: float = 0.5) -> Image.Image:
    """One row: the image, then one overlay per map with its caption underneath."""
    base = _as_pil(image)
    scale = tile / max(base.size)
    size = (max(1, round(base.width * scale)), max(1, round(base.height * scale)))
    small = base.resize(size, Image.BILINEAR)
    tiles = [small] + [overlay(small, m, alpha) for m in maps]
    texts = ["input"] + list(captions)
    band = max(16, tile // 12)
    grid = Image.new("RGB", (size[0] * len(tiles), size[1] + band), "white")
    draw, font = ImageDraw.Draw(grid), _font(band - 4)
    for i, (t, text) in enumerate(zip(tiles, texts)):
        grid.paste(t, (i * size[0], 0))
        draw.text((i * size[0] + 2, size[1] + 1), text, fill="black", font=font)
    return grid


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def save_attention_images(out_dir: str, stem: str, image, maps: Sequence,
                          labels: Sequence[tuple], alpha: float = 0.5) -> list:
    """Writes ``{stem}_{class}.png`` per (class_name, score) in ``labels`` (maps in the
    same order) at the image's own size, and ``{stem}_grid.png``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    base = _as_pil(image)
    paths = []
    for m, (name, _) in zip(maps, labels):
        path = os.path.join(out_dir, f"{stem}_{_slug(name)}.png")
        overlay(base, m, alpha).save(path)
        paths.append(path)
    captions = [f"{name} {score:.2f}" for name, score in labels]
    path = os.path.join(out_dir, f"{stem}_grid.png")
    attention_grid(base, maps, captions, alpha=alpha).save(path)
    return paths + [path]
