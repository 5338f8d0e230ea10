"""Loss parity with PyTorch (torch.nn.functional)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csra_jax.train.loss import bce_with_logits, softmax_cross_entropy

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _data(seed=0, shape=(6, 11)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=shape).astype(np.float32) * 4
    logits[0, :4] = [60.0, -60.0, 30.0, -30.0]  # saturating values
    labels = (rng.random(shape) < 0.4).astype(np.float32)
    return logits, labels


def test_bce_matches_torch_mean():
    logits, labels = _data()
    ours = bce_with_logits(logits, labels)
    ref = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels))
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(float(ours), ref.item(), rtol=1e-6, atol=1e-7)


def test_bce_soft_labels_and_grad_match_torch():
    logits, _ = _data(1)
    labels = np.random.default_rng(1).random(logits.shape).astype(np.float32)
    g = jax.grad(lambda x: bce_with_logits(x, labels))(jnp.asarray(logits))
    t = torch.from_numpy(logits).requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(t, torch.from_numpy(labels))
    loss.backward()
    np.testing.assert_allclose(float(bce_with_logits(logits, labels)), loss.item(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), rtol=1e-5, atol=1e-8)


def test_bce_bf16_logits_computed_in_float32():
    logits, labels = _data(2)
    lb = jnp.asarray(logits, jnp.bfloat16)
    ours = bce_with_logits(lb, labels)
    assert ours.dtype == jnp.float32
    ref = F.binary_cross_entropy_with_logits(
        torch.from_numpy(np.array(lb.astype(jnp.float32))), torch.from_numpy(labels)
    )
    np.testing.assert_allclose(float(ours), ref.item(), rtol=1e-6)


def test_bce_ignore_and_mask_average_over_kept_entries():
    logits, labels = _data(3)
    rng = np.random.default_rng(3)
    ignore = rng.random(logits.shape) < 0.3
    mask = np.array([1, 1, 0, 1, 0, 1], bool)
    keep = ~ignore & mask[:, None]
    per = F.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(labels), reduction="none"
    ).numpy()
    np.testing.assert_allclose(float(bce_with_logits(logits, labels, ignore=ignore, mask=mask)), per[keep].mean(), rtol=1e-6)
    np.testing.assert_allclose(float(bce_with_logits(logits, labels, ignore=ignore)), per[~ignore].mean(), rtol=1e-6)
    np.testing.assert_allclose(float(bce_with_logits(logits, labels, mask=mask)), per[mask].mean(), rtol=1e-6)
    # Ignored entries' values do not matter.
    changed = np.where(keep, labels, 1 - labels)
    np.testing.assert_allclose(
        float(bce_with_logits(logits, changed, ignore=ignore, mask=mask)), per[keep].mean(), rtol=1e-6
    )


def test_bce_all_masked_is_zero_with_finite_grad():
    logits, labels = _data(4)
    fn = jax.jit(lambda x: bce_with_logits(x, labels, mask=np.zeros(6, bool)))
    assert float(fn(logits)) == 0.0
    g = jax.grad(fn)(jnp.asarray(logits))
    assert np.all(np.asarray(g) == 0.0)


def test_bce_shape_errors():
    with pytest.raises(ValueError, match="labels have shape"):
        bce_with_logits(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="ignore has shape"):
        bce_with_logits(np.zeros((2, 3)), np.zeros((2, 3)), ignore=np.zeros((2,)))
    with pytest.raises(ValueError, match="mask must have shape"):
        bce_with_logits(np.zeros((2, 3)), np.zeros((2, 3)), mask=np.zeros((3,)))


def test_softmax_ce_matches_torch():
    rng = np.random.default_rng(5)
    logits = (rng.normal(size=(8, 13)) * 5).astype(np.float32)
    labels = rng.integers(0, 13, size=8)
    ref = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    np.testing.assert_allclose(float(softmax_cross_entropy(logits, labels)), ref.item(), rtol=1e-6)
    mask = np.array([1, 0, 1, 1, 0, 0, 1, 1], bool)
    ref_m = F.cross_entropy(torch.from_numpy(logits[mask]), torch.from_numpy(labels[mask]))
    ours_m = jax.jit(softmax_cross_entropy)(logits, labels, mask)
    np.testing.assert_allclose(float(ours_m), ref_m.item(), rtol=1e-6)
    lb = jnp.asarray(logits, jnp.bfloat16)
    assert softmax_cross_entropy(lb, labels).dtype == jnp.float32


def test_softmax_ce_errors():
    with pytest.raises(ValueError, match="int_labels must be in"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="int_labels must have shape"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
