"""Multi-head scaled dot-product attention, with a formulation for XLA:CPU.

``multi_head_attention(q, k, v, impl)`` takes and returns (B, tokens, heads, head_dim),
the layout of ``jax.nn.dot_product_attention``. ``impl`` picks the lowering:

- ``"jax"``: ``jax.nn.dot_product_attention``, which lets XLA (or cuDNN on GPUs) choose
  a fused kernel.
- ``"cpu"``: heads-major attention written out for XLA:CPU. Its reference lowering of
  ``jax.nn.dot_product_attention`` batches the two products over (B, heads) in layouts
  that put transposes of the (tokens x tokens) attention weights around them, and the
  softmax's derivative materialises broadcast copies of the same size. Here q, k and v
  are transposed once to (B, heads, tokens, head_dim) (small next to the weights),
  the inference forward divides the (tokens x head_dim) output by the softmax's sum
  instead of normalising the (tokens x tokens) weights, and the backward pass is written
  out (``dS = P * (dP - rowsum(dO * O))``, the flash-attention identity) so that no
  broadcast of the weights is kept. ``python bench/attention.py`` times both against
  PyTorch's ``scaled_dot_product_attention``.
- ``"auto"`` (default): ``"cpu"`` on the CPU backend, ``"jax"`` on GPU/TPU.

Both compute softmax(q kᵀ / sqrt(head_dim)) v and differ by float rounding only. The
``"cpu"`` one's products accumulate in float32 (``csra_jax.models.dense``: with bfloat16
operands that is also XLA:CPU's faster bf16 kernel). The
``"cpu"`` one is a ``jax.custom_vjp``: reverse-mode (``grad``/``vjp``) differentiates it,
forward-mode (``jvp``) does not; use ``"jax"`` for forward-mode derivatives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from csra_jax.models.backend_choice import resolve_per_backend

ATTENTION_IMPLS = ("auto", "jax", "cpu")


def resolve_attention_impl(impl: str) -> str:
    return resolve_per_backend("attention_impl", impl, ATTENTION_IMPLS, on_cpu="cpu",
                               elsewhere="jax")


def multi_head_attention(q, k, v, impl: str = "auto"):
    """softmax(q kᵀ / sqrt(d)) v per head: q (B, N, heads, d), k and v (B, M, heads, d),
    the result (B, N, heads, d)."""
    if (q.ndim != 4 or k.shape != v.shape or k.ndim != 4
            or (q.shape[0],) + q.shape[2:] != (k.shape[0],) + k.shape[2:]):
        raise ValueError(f"q must be (batch, tokens, heads, head_dim) and k, v (batch, "
                         f"key tokens, heads, head_dim); got {q.shape}, {k.shape}, {v.shape}")
    if resolve_attention_impl(impl) == "jax":
        return jax.nn.dot_product_attention(q, k, v)
    scale = jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    out = _heads_major_attention(_swap_tokens_heads(q) * scale, _swap_tokens_heads(k),
                                 _swap_tokens_heads(v))
    return _swap_tokens_heads(out)


def _swap_tokens_heads(t):
    """(B, N, heads, d) <-> (B, heads, N, d)."""
    return jnp.transpose(t, (0, 2, 1, 3))


def _product(spec, a, b):
    """An einsum accumulated in, and returned as, float32 (with bf16 operands also
    XLA:CPU's faster kernel); callers round it once where they need the operand dtype."""
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _logits(q, k):
    return _product("bhqd,bhkd->bhqk", q, k)


@jax.custom_vjp
def _heads_major_attention(q, k, v):
    """(B, heads, N, d) inputs with q already scaled; softmax in float32."""
    s = _logits(q, k)
    e = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
    out = _product("bhqk,bhkd->bhqd", e.astype(v.dtype), v)
    return (out / jnp.sum(e, axis=-1, keepdims=True)).astype(v.dtype)


def _forward(q, k, v):
    p = jax.nn.softmax(_logits(q, k), axis=-1)
    out = _product("bhqk,bhkd->bhqd", p.astype(v.dtype), v).astype(v.dtype)
    return out, (q, k, v, p, out)


def _backward(residuals, d_out):
    q, k, v, p, out = residuals
    d_p = _product("bhqd,bhkd->bhqk", d_out, v)
    # rowsum(dP * P) = rowsum(dO * O): a sum over head_dim instead of over the tokens.
    row = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    d_s = (p * (d_p - row)).astype(q.dtype)
    d_v = _product("bhqk,bhqd->bhkd", p.astype(d_out.dtype), d_out).astype(v.dtype)
    d_q = _product("bhqk,bhkd->bhqd", d_s, k).astype(q.dtype)
    d_k = _product("bhqk,bhqd->bhkd", d_s, q).astype(k.dtype)
    return d_q, d_k, d_v


_heads_major_attention.defvjp(_forward, _backward)
