"""Attend-and-rectify head: parity with a PyTorch implementation of the same equations
(written here after the authors' released modules), the regulariser on hand-made masks,
gates, and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csra_jax import create_model
from csra_jax.models.attend_rectify import AttendRectifyHead, attention_reg
from csra_jax.train.loss import bce_with_logits

torch.set_num_threads(1)
C_STAGES = (6, 8, 10, 12)   # channels of four stage outputs, shallow to deep
SIZES = (16, 8, 5, 3)       # spatial sizes (5: an odd map, whose last row the pooling drops)
L, K = 7, 3


class TorchAttentionModule(torch.nn.Module):
    """One depth, NCHW, as the authors' AttentionModule (+ AttentionHead, OutHead)."""

    def __init__(self, c):
        super().__init__()
        self.att = torch.nn.Conv2d(c, K, 3, padding=1, bias=False)
        self.out = torch.nn.Conv2d(c, K * L, 3, padding=1, bias=False)
        self.score = torch.nn.Conv2d(c, K, 3, padding=1, bias=False)

    def forward(self, x):
        b, _, h, w = x.shape
        mask = F.softmax(self.att(x).view(b, K, h * w), 2).view(b, K, h, w)
        pooled = F.avg_pool2d(mask, 2, 2).view(b, K, -1)
        reg = (torch.bmm(pooled, pooled.transpose(1, 2)) * (1 - torch.eye(K))).view(-1) ** 2
        mask = mask.view(b, K, 1, h * w)
        out = (self.out(x).view(b, K, L, h * w) * mask).sum(3)
        scores = F.softmax(torch.tanh((self.score(x).view(b, K, 1, h * w) * mask).sum(3)), 1)
        return (out * scores).sum(1, keepdim=True), reg.mean()


class TorchAttendRectify(torch.nn.Module):
    def __init__(self, depth, gate, aggregate, reg_weight):
        super().__init__()
        self.attached = [len(C_STAGES) - 2 - j for j in range(depth)]
        self.mods = torch.nn.ModuleDict({str(i): TorchAttentionModule(C_STAGES[i])
                                         for i in self.attached})
        self.fc = torch.nn.Linear(C_STAGES[-1], L)
        self.gates = torch.nn.Linear(C_STAGES[-1], depth + 1, bias=False)
        self.bn = torch.nn.BatchNorm1d(depth + 1)
        self.gate, self.aggregate, self.reg_weight = gate, aggregate, reg_weight

    def forward(self, stages):
        outputs, regs = [], []
        for i in self.attached:
            o, r = self.mods[str(i)](stages[i])
            outputs.append(o)
            regs.append(r)
        pooled = stages[-1].mean((2, 3))
        outputs.append(self.fc(pooled).view(pooled.shape[0], 1, -1))
        outputs = torch.cat(outputs, 1)
        if self.aggregate == "log_softmax":
            outputs = F.log_softmax(outputs, 2)
        gates = torch.tanh(self.bn(self.gates(pooled)))
        if self.gate == "softmax":
            out = (outputs * F.softmax(gates, 1).unsqueeze(2)).sum(1)
        else:
            g = torch.sigmoid(gates).unsqueeze(2)
            out = (outputs * g).sum(1) / (1e-6 + g.sum(1))
        return out, self.reg_weight * sum(regs) / len(regs)


def _conv(w):  # OIHW -> HWIO
    return w.detach().numpy().transpose(2, 3, 1, 0)


def _load(tm: TorchAttendRectify):
    """Our head's variables, copied from the torch module."""
    params = {f"att{i}": {"attention": _conv(m.att.weight), "score": _conv(m.score.weight),
                          "output": _conv(m.out.weight)} for i, m in
              ((int(i), m) for i, m in tm.mods.items())}
    params["classifier"] = {"kernel": tm.fc.weight.detach().numpy().T,
                            "bias": tm.fc.bias.detach().numpy()}
    params["gate"] = {"kernel": tm.gates.weight.detach().numpy().T}
    params["gate_bn"] = {"scale": tm.bn.weight.detach().numpy(), "bias": tm.bn.bias.detach().numpy()}
    stats = {"gate_bn": {"mean": tm.bn.running_mean.numpy().copy(),
                         "var": tm.bn.running_var.numpy().copy()}}
    return {"params": params, "batch_stats": stats}


def _stages(seed, b=4):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, s, s, c)).astype(np.float32)
            for s, c in zip(SIZES, C_STAGES)]


@pytest.mark.parametrize("depth, gate, aggregate", [
    (3, "softmax", "logits"), (2, "sigmoid", "logits"), (3, "softmax", "log_softmax"),
    (1, "sigmoid", "log_softmax")])
def test_matches_torch_in_eval_and_train_mode(depth, gate, aggregate):
    torch.manual_seed(depth)
    tm = TorchAttendRectify(depth, gate, aggregate, reg_weight=1e-3)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        tm.bn.running_mean.uniform_(-0.5, 0.5)
        tm.bn.running_var.uniform_(0.5, 2.0)
        tm.bn.weight.uniform_(0.5, 1.5)
        tm.bn.bias.uniform_(-0.3, 0.3)
    head = AttendRectifyHead(L, attention_depth=depth, attention_heads=K, gate=gate,
                             aggregate=aggregate, reg_weight=1e-3)
    variables = _load(tm)
    stages = _stages(depth)
    torch_stages = [torch.from_numpy(s.transpose(0, 3, 1, 2)) for s in stages]

    ours = head.apply(variables, stages)
    tm.eval()
    with torch.no_grad():
        ref, _ = tm(torch_stages)
    scale = float(ref.abs().max())
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), atol=1e-5 * max(scale, 1.0))

    ours, updates = head.apply(variables, stages, train=True,
                               mutable=["batch_stats", "losses"])
    tm.train()
    with torch.no_grad():
        ref, ref_reg = tm(torch_stages)
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), atol=1e-5 * max(scale, 1.0))
    (reg,) = updates["losses"]["attention_reg"]
    np.testing.assert_allclose(float(reg), float(ref_reg), rtol=1e-4)
    # torch's BatchNorm1d update: the unbiased batch variance goes into running_var.
    np.testing.assert_allclose(updates["batch_stats"]["gate_bn"]["mean"],
                               tm.bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["gate_bn"]["var"],
                               tm.bn.running_var.numpy(), rtol=1e-5)


def _masks(h, w, positions):
    """(1, h, w, K) one-hot masks: head k puts all its mass on positions[k]."""
    m = np.zeros((1, h, w, len(positions)), np.float32)
    for k, (i, j) in enumerate(positions):
        m[0, i, j, k] = 1.0
    return jnp.asarray(m)


def test_regulariser_on_hand_made_masks():
    # Both heads on the same 2x2 cell: pooled value 1/4 each, G = 1/16 everywhere;
    # off-diagonal squares (1/16)^2 on 2 of 4 entries -> mean 1/512.
    assert float(attention_reg(_masks(2, 2, [(0, 0), (1, 1)]))) == pytest.approx(1 / 512)
    # Heads in different pooled cells do not overlap: no penalty.
    assert float(attention_reg(_masks(4, 4, [(0, 0), (3, 3)]))) == 0.0
    # An odd map's last row is dropped by the 2x2 pooling, as in F.avg_pool2d.
    assert float(attention_reg(_masks(3, 3, [(2, 0), (2, 1)]))) == 0.0
    # Three heads, two sharing a pooled cell: 2 non-zero off-diagonal entries of 9.
    assert float(attention_reg(_masks(4, 4, [(0, 0), (1, 1), (3, 3)]))) == \
        pytest.approx(2 * (1 / 16) ** 2 / 9)
    with pytest.raises(ValueError, match="at least 2x2"):
        attention_reg(_masks(1, 1, [(0, 0), (0, 0)]))


@pytest.mark.parametrize("gate", ["softmax", "sigmoid"])
def test_gates_sum_to_one(gate):
    head = AttendRectifyHead(L, attention_depth=3, attention_heads=K, gate=gate)
    stages = _stages(7)
    variables = head.init(jax.random.key(0), stages)
    _, inter = head.apply(variables, stages, mutable=["intermediates"])
    (gamma,) = inter["intermediates"]["gates"]
    assert gamma.shape == (4, 4)
    np.testing.assert_allclose(np.asarray(gamma).sum(-1), 1.0, atol=1e-5)
    assert np.all(np.asarray(gamma) > 0)


def test_jit_and_grad_reach_every_parameter_and_the_regulariser_pushes_masks_apart():
    head = AttendRectifyHead(L, attention_depth=2, attention_heads=K)
    stages = _stages(3)
    variables = head.init(jax.random.key(0), stages)
    labels = (np.random.default_rng(0).random((4, L)) < 0.3).astype(np.float32)

    def loss(params, reg_only):
        out, upd = head.apply({**variables, "params": params}, stages, train=True,
                              mutable=["batch_stats", "losses"])
        reg = sum(jax.tree.leaves(upd["losses"]))
        if reg_only:
            return reg
        return bce_with_logits(out, labels) + reg

    grads = jax.jit(jax.grad(loss), static_argnums=1)(variables["params"], False)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, jax.tree_util.keystr(path)
    reg_grads = jax.jit(jax.grad(loss), static_argnums=1)(variables["params"], True)
    # The regulariser acts only through the attention masks.
    assert np.abs(reg_grads["att2"]["attention"]).max() > 0
    assert np.abs(reg_grads["att2"]["output"]).max() == 0
    assert np.abs(reg_grads["classifier"]["kernel"]).max() == 0


def test_create_model_feeds_stage_outputs_and_rejects_bad_settings():
    model = create_model("resnet18", 5, head="attend_rectify", attention_heads=4)
    x = jnp.zeros((2, 32, 32, 3))  # layer3 2x2, layer4 1x1
    variables = model.init(jax.random.key(0), x)
    assert sorted(variables["params"]["head"]) == ["att0", "att1", "att2", "classifier",
                                                   "gate", "gate_bn"]
    # layer3's module: 3x3 convs from 256 channels to K, K and K*L.
    assert variables["params"]["head"]["att2"]["output"].shape == (3, 3, 256, 20)
    assert model.apply(variables, x).shape == (2, 5)
    with pytest.raises(ValueError, match="attention_depth=4 but the backbone has only 3"):
        create_model("resnet18", 5, head="attend_rectify", attention_depth=4).init(
            jax.random.key(0), x)
    with pytest.raises(ValueError, match="gate='max'"):
        create_model("resnet18", 5, head="attend_rectify", gate="max")
    with pytest.raises(ValueError, match="attention_heads must be a positive int"):
        create_model("resnet18", 5, head="attend_rectify", attention_heads=0)
