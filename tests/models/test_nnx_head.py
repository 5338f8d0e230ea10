"""CSRAHead used from Flax NNX code via csra_head_nnx (flax.nnx.bridge)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from csra_jax import CSRAHead, csra_head_nnx


class TinyNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), strides=(2, 2), rngs=rngs)
        self.head = csra_head_nnx(8, 5, num_heads=4, lam=0.5, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(x)))


def test_nnx_model_matches_linen_head_and_trains():
    net = TinyNet(nnx.Rngs(0))
    images = jax.random.normal(jax.random.key(1), (2, 12, 12, 3))
    feats = nnx.relu(net.conv(images))
    kernel = net.head.kernel[...]
    assert kernel.shape == (4, 8, 5)
    linen = CSRAHead(5, num_heads=4, lam=0.5).apply({"params": {"kernel": kernel}}, feats)
    np.testing.assert_allclose(net(images), linen, rtol=1e-6)

    optimizer = nnx.Optimizer(net, optax.sgd(0.1), wrt=nnx.Param)
    targets = jnp.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 1]], jnp.float32)

    @nnx.jit
    def step(net, optimizer):
        def loss_fn(net):
            logits = net(images)
            return jnp.mean(jnp.maximum(logits, 0) - logits * targets
                            + jnp.log1p(jnp.exp(-jnp.abs(logits))))
        loss, grads = nnx.value_and_grad(loss_fn)(net)
        optimizer.update(net, grads)
        return loss

    losses = [float(step(net, optimizer)) for _ in range(5)]
    assert losses[-1] < losses[0]
    assert not np.allclose(net.head.kernel[...], kernel)
