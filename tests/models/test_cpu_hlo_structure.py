"""What XLA:CPU compiles the ResNet train and eval steps into, where it costs time: the
structure the model code is written to get (``resnet.residual_relu``, ``resnet.Conv1x1``),
checked on the optimised HLO of resnet50@64 with ``conv_impl="gemm"`` (the default's
1x1 path)."""

import re

import jax
import jax.numpy as jnp
import pytest

from csra_jax import create_model

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu",
                                reason="XLA:CPU's fusion and layout decisions")


@pytest.fixture(scope="module")
def hlo():
    model = create_model("resnet50", 5, head="gap", img_size=64, conv_impl="gemm")
    images = jnp.zeros((2, 64, 64, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), images)

    def train_grad(v, x):
        loss = lambda p: model.apply({**v, "params": p}, x, train=True,
                                     mutable=["batch_stats"])[0].sum()
        return jax.grad(loss)(v["params"])

    compiled = lambda fn: jax.jit(fn).lower(variables, images).compile().as_text()
    return {"eval": compiled(model.apply), "train": compiled(train_grad)}


def _largest_loop_fusion(text):
    """Operand count of the widest elementwise (kLoop) fusion."""
    operands = [len(re.split(r",\s*(?![^()]*\))", m.group(1)))
                for m in re.finditer(r"= [^=]*? fusion\((.*?)\), kind=kLoop", text)]
    assert operands, "no loop fusion found: the HLO text format changed"
    return max(operands)


@pytest.mark.parametrize("step", ["eval", "train"])
def test_block_outputs_are_not_recomputed_down_the_chain(hlo, step):
    """With ``max(s, 0)`` as the blocks' output ReLU, the last layer3 block's fusion took
    every earlier block's conv output (35 operands in eval, 30 in the gradient): XLA
    counts max-with-a-constant as unary and duplicates it into every consumer, so each
    block recomputed the whole chain. With the select no elementwise fusion reads more
    than one block's worth."""
    assert _largest_loop_fusion(hlo[step]) <= 16


def test_no_channel_major_copies_of_activations_in_the_gradient(hlo):
    """The 1x1 convs' weight gradient contracts over batch and space; written as a dot over
    the 4-D maps, XLA fed it a channel-major (C, N*H*W) copy of the output gradient,
    fused into BatchNorm's backward and written with a stride (36 such 4-D transposes
    here; 20% of the resnet101@448 train step). On the flattened (N*H*W, C) maps the dot
    reads them as they are."""
    moved = re.findall(r"= f32\[\d+,\d+,\d+,\d+\]\S* transpose\(\S+\), dimensions=\{3,0,1,2\}",
                       hlo["train"])
    assert not moved, moved[:3]


def test_vit_dense_weight_gradients_read_the_output_gradient_as_it_is():
    """``csra_jax.models.dense``: with autodiff's ``xᵀ dy`` XLA:CPU copied every Dense
    layer's output gradient into a (features, tokens) transposed buffer for the weight
    gradient (16 copies in this 4-block ViT; 2% of the vit_b16 train step); the swapped
    ``(dyᵀ x)ᵀ`` reads it in place."""
    model = create_model("vit_tiny", 5, img_size=64)
    images = jnp.zeros((8, 64, 64, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), images)

    def train_grad(v, x):
        return jax.grad(lambda p: model.apply({"params": p}, x, train=True).sum())(v["params"])

    text = jax.jit(train_grad).lower(variables, images).compile().as_text()
    tokens = 8 * (64 // 16) ** 2 + 8  # patch tokens and class tokens, flattened
    transposed = re.findall(rf"= f32\[\d+,{tokens}\]\{{1,0\}} (?:copy|bitcast|fusion)\(.*",
                            text)
    assert not transposed, transposed[:3]
