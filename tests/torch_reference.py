"""PyTorch references for parity tests, written from the paper's equations and the
official CSRA code's structure (ResNet_CSRA / VIT_CSRA: backbone + classifier.multi_head)."""

import math

import numpy as np
import torch
import torch.nn as tnn
import torchvision

torch.set_num_threads(2)


class TorchCSRA(tnn.Module):
    """One head: score = conv1x1(x) / ||m_i||; base = mean; att = softmax(T*score)*score."""

    def __init__(self, input_dim, num_classes, T, lam, normalize=True):
        super().__init__()
        self.T, self.lam, self.normalize = T, lam, normalize
        self.head = tnn.Conv2d(input_dim, num_classes, 1, bias=False)

    def forward(self, x):  # (B, d, H, W)
        score = self.head(x)
        if self.normalize:
            score = score / torch.norm(self.head.weight, dim=1, keepdim=True).transpose(0, 1)
        score = score.flatten(2)
        base_logit = torch.mean(score, dim=2)
        if math.isinf(self.T):
            att_logit = torch.max(score, dim=2)[0]
        else:
            att_logit = torch.sum(torch.softmax(score * self.T, dim=2) * score, dim=2)
        return base_logit + self.lam * att_logit


class TorchMHA(tnn.Module):
    def __init__(self, temperatures, lam, input_dim, num_classes, normalize=True):
        super().__init__()
        self.multi_head = tnn.ModuleList(
            [TorchCSRA(input_dim, num_classes, t, lam, normalize) for t in temperatures])

    def forward(self, x):
        return sum(head(x) for head in self.multi_head)


class TorchResNetCSRA(torchvision.models.ResNet):
    """Mirrors the official ResNet_CSRA: torchvision trunk (fc kept but unused) + MHA."""

    def __init__(self, arch, temperatures, lam, num_classes):
        base = getattr(torchvision.models, arch)(weights=None)
        super().__init__(type(base.layer1[0]), [len(l) for l in
                                                 (base.layer1, base.layer2, base.layer3, base.layer4)])
        self.classifier = TorchMHA(temperatures, lam, self.fc.in_features, num_classes)

    def backbone(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.classifier(self.backbone(x))


def randomize_bn(model, seed=0):
    """Random BN statistics and affine params, so eval-mode parity tests BN for real."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def to_nchw(images_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))


def max_rel_diff(ours, ref) -> float:
    """max |ours - ref| relative to the reference's scale (max |ref|)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))
