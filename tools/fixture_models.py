"""Torch architectures of bitplan's test and benchmark fixture models.

Dev-time tooling only (the product itself is C++): tools/train_fixtures.py trains or loads
these models and exports them to ONNX under models/, and bench/torch_peer.py times them as
the PyTorch peer. Runs with Debian's torch 1.13 (/usr/bin/python3).

The forward passes are written so that the ONNX export (opset 13, dynamic batch) contains
no shape-computing subgraphs (Shape/Gather/Expand/ConstantOfShape): every Reshape uses -1
for the batch axis and every other size is a constant, the global average pool is
nn.AdaptiveAvgPool2d(1) (GlobalAveragePool) followed by torch.flatten(x, 1) (Flatten).

Models and input shapes (NCHW float32):
  FmnistResNet, FmnistMobileNetV2, FmnistViT, FmnistMLP   [N, 1, 28, 28]  Fashion-MNIST
  CifarResNet(20), CifarResNet(32)                         [N, 3, 32, 32]  CIFAR-10
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_CLASSES = 10


# --------------------------------------------------------------------------------------
# Fashion-MNIST: ResNet-style CNN
# --------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, residual add, ReLU; 1x1 conv + BN downsample where the
    shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, 0, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class FmnistResNet(nn.Module):
    """Stem conv3x3 16 + BN + ReLU; stages of one BasicBlock (16/s1, 32/s2, 64/s2);
    global average pool; Linear 64 -> 10."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


# --------------------------------------------------------------------------------------
# Fashion-MNIST: MobileNetV2-style CNN
# --------------------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    """Expand 1x1 + BN + ReLU6, depthwise 3x3 + BN + ReLU6, project 1x1 + BN (linear
    bottleneck); residual add when stride 1 and in == out channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.use_residual = stride == 1 and in_ch == out_ch
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class FmnistMobileNetV2(nn.Module):
    """Stem conv3x3/s1 16 + BN + ReLU6; inverted residuals (expansion 4)
    16 -> 24 (s2) -> 24 -> 32 (s2) -> 32; 1x1 conv 128 + BN + ReLU6; global average pool;
    Linear 128 -> 10."""

    # (out_channels, stride) per inverted residual block
    BLOCKS = ((24, 2), (24, 1), (32, 2), (32, 1))
    EXPAND = 4

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                          nn.ReLU6(inplace=True))]
        in_ch = 16
        for out_ch, stride in self.BLOCKS:
            layers.append(InvertedResidual(in_ch, out_ch, stride, self.EXPAND))
            in_ch = out_ch
        layers.append(nn.Sequential(nn.Conv2d(in_ch, 128, 1, 1, 0, bias=False),
                                    nn.BatchNorm2d(128), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------
# Fashion-MNIST: tiny ViT
# --------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention written out: Linear qkv, reshape/transpose, MatMul, scale,
    Softmax, MatMul, reshape, Linear proj (no nn.MultiheadAttention)."""

    def __init__(self, dim: int, heads: int, tokens: int) -> None:
        super().__init__()
        assert dim % heads == 0
        self.heads = heads
        self.head_dim = dim // heads
        self.tokens = tokens
        self.dim = dim
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, d = self.tokens, self.heads, self.head_dim
        qkv = self.qkv(x).reshape(-1, t, 3, h, d).permute(2, 0, 3, 1, 4)  # [3, B, h, T, d]
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.matmul(q, k.transpose(-2, -1)) * self.scale           # [B, h, T, T]
        attn = torch.softmax(attn, dim=-1)
        out = torch.matmul(attn, v)                                        # [B, h, T, d]
        out = out.transpose(1, 2).reshape(-1, t, self.dim)                 # [B, T, dim]
        return self.proj(out)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + MHSA(LN(x)), x + MLP(LN(x)), MLP with exact
    (erf) GELU."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, tokens: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FmnistViT(nn.Module):
    """Patch embedding Conv2d(1, 64, 7, stride 7) -> 16 tokens of 64; learned cls token and
    positional embedding (17 positions); 2 pre-LN encoder blocks (4 heads, MLP 128, GELU);
    final LayerNorm; Linear 64 -> 10 on the cls token.

    The cls token is prepended by zero-padding the token axis (Pad) and adding
    (pos_embed + [cls_token; 0, ..., 0]), which equals the usual cat(cls, tokens) + pos_embed
    exactly but needs no batch-size-dependent Expand in the ONNX graph; the sum of the two
    parameters is folded into one initializer at export."""

    def __init__(self, num_classes: int = NUM_CLASSES, dim: int = 64, depth: int = 2,
                 heads: int = 4, mlp_dim: int = 128, patch: int = 7, image: int = 28) -> None:
        super().__init__()
        self.dim = dim
        self.num_patches = (image // patch) ** 2
        tokens = self.num_patches + 1
        self.patch_embed = nn.Conv2d(1, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_dim, tokens)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)                       # [B, dim, 4, 4]
        x = x.reshape(-1, self.dim, self.num_patches).transpose(1, 2)  # [B, 16, dim]
        x = F.pad(x, (0, 0, 1, 0))                    # [B, 17, dim], row 0 = 0
        cls_and_pos = torch.cat(
            [self.pos_embed[:, :1] + self.cls_token, self.pos_embed[:, 1:]], dim=1)
        x = x + cls_and_pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# --------------------------------------------------------------------------------------
# Fashion-MNIST: MLP
# --------------------------------------------------------------------------------------
class FmnistMLP(nn.Module):
    """Flatten -> Linear 784-256 -> ReLU -> Linear 256-128 -> ReLU -> Linear 128-10."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(inplace=True),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------------------
# CIFAR-10: the ResNets of He et al. (2016), as trained by Y. Idelbayev
# (../shared/models/cifar10-resnet, BSD-2-Clause). Module names match the published
# state dicts (conv1, bn1, layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}, linear).
# --------------------------------------------------------------------------------------
class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 in space, zero-pad channels (planes // 4 each
    side). No parameters."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)


class CifarBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """depth = 6n + 2: conv3x3 16 + BN + ReLU, three stages of n blocks (16, 32, 64;
    stride 2 at the start of stages 2 and 3), global average pool, Linear 64 -> 10."""

    def __init__(self, depth: int = 20, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(CifarBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(torch.flatten(self.pool(x), 1))


def load_published_cifar_state_dict(path: str) -> dict:
    """Reads one of the published .th files ({'state_dict': ..., 'best_prec1': ...}, keys
    possibly prefixed 'module.' from DataParallel) and returns a plain state dict."""
    blob = torch.load(path, map_location="cpu")
    sd = blob["state_dict"] if isinstance(blob, dict) and "state_dict" in blob else blob
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------
FMNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)

MODELS = {
    "fmnist_resnet": (FmnistResNet, {}, FMNIST_SHAPE),
    "fmnist_mobilenetv2": (FmnistMobileNetV2, {}, FMNIST_SHAPE),
    "fmnist_vit": (FmnistViT, {}, FMNIST_SHAPE),
    "fmnist_mlp": (FmnistMLP, {}, FMNIST_SHAPE),
    "cifar10_resnet20": (CifarResNet, {"depth": 20}, CIFAR_SHAPE),
    "cifar10_resnet32": (CifarResNet, {"depth": 32}, CIFAR_SHAPE),
}

# Published weights of the CIFAR models, relative to the repository root.
PUBLISHED_WEIGHTS = {
    "cifar10_resnet20": "../shared/models/cifar10-resnet/resnet20-12fca82f.th",
    "cifar10_resnet32": "../shared/models/cifar10-resnet/resnet32-d509ac18.th",
}


def build(name: str) -> nn.Module:
    """A freshly initialised model of the registry."""
    cls, kwargs, _ = MODELS[name]
    return cls(**kwargs)


def input_shape(name: str) -> tuple:
    """(C, H, W) of the model's input."""
    return MODELS[name][2]
