"""Convolutional backbones written in the package: ResNet-18/34-style and MobileNetV2-style.

Every backbone maps images [B, 3, S, S] to three feature maps at strides 8, 16
and 32 (``features``), and exposes their channel counts as ``channels``. The
landmark head fuses all three (heatmaps need resolution), the coefficient
head pools the last one. Plain Conv/BatchNorm/ReLU stacks only, so
``model.to(memory_format=torch.channels_last)`` and ``torch.autocast`` apply
without special cases.
"""

from typing import List, Sequence, Tuple

import torch
from torch import nn

BACKBONES = ("resnet18", "resnet34", "mobilenetv2")


def _divisible(value: float, divisor: int = 8) -> int:
    """Rounds a channel count to a multiple of `divisor` (at least `divisor`), as width multipliers need."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU6 when `act`), padding kernel // 2.

    Args:
        cin: input channels.
        cout: output channels.
        kernel: kernel side.
        stride: stride.
        groups: convolution groups (cin for depthwise).
        act: append ReLU6.

    Returns:
        The nn.Sequential.
    """
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and an identity (or 1x1 projection) shortcut.

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the first conv and the shortcut.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        # Residual branches start as the identity: training is stabler from there.
        nn.init.zeros_(self.bn2.weight)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: [B, cin, H, W].

        Returns:
            [B, cout, H / stride, W / stride].
        """
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-style backbone with basic blocks and a width multiplier.

    Args:
        blocks: blocks per stage, (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-34.
        width: channel multiplier (1.0: 64, 128, 256, 512 channels).

    Raises:
        ValueError: blocks is not 4 positive stage depths.
    """

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), width: float = 1.0):
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be 4 positive stage depths, got {tuple(blocks)}")
        widths = [_divisible(c * width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], widths[0]
        for i, (n, cout) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.channels: Tuple[int, int, int] = tuple(widths[1:])

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The three feature maps.

        Args:
            x: [B, 3, S, S] images.

        Returns:
            [C3 (stride 8), C4 (stride 16), C5 (stride 32)] feature maps [B, C_k, S / stride, S / stride].
        """
        x = self.stages[0](self.stem(x))
        out = []
        for stage in self.stages[1:]:
            x = stage(x)
            out.append(x)
        return out


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection; residual when shapes match.

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the depthwise conv.
        expand: expansion factor of the hidden channels.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: [B, cin, H, W].

        Returns:
            [B, cout, H / stride, W / stride].
        """
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2-style backbone (inverted residuals, linear bottlenecks) with a width multiplier.

    Args:
        width: channel multiplier (1.0: the standard MobileNetV2 channels).
    """

    # (expansion, channels, repeats, stride); the outputs after the stride-8,
    # stride-16 and stride-32 stages are the three features.
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    TAPS = (2, 4, 6)  # indices into SETTINGS after which a feature is taken

    def __init__(self, width: float = 1.0):
        super().__init__()
        cin = _divisible(32 * width)
        self.stem = conv_bn(3, cin, 3, 2)
        stages, channels = [], []
        for i, (t, c, n, s) in enumerate(self.SETTINGS):
            cout = _divisible(c * width)
            stages.append(
                nn.Sequential(
                    *[InvertedResidual(cin if j == 0 else cout, cout, s if j == 0 else 1, t) for j in range(n)]
                )
            )
            cin = cout
            if i in self.TAPS:
                channels.append(cout)
        self.stages = nn.ModuleList(stages)
        last = _divisible(1280 * width)
        self.head = conv_bn(cin, last, 1)
        channels[-1] = last
        self.channels: Tuple[int, int, int] = tuple(channels)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The three feature maps.

        Args:
            x: [B, 3, S, S] images.

        Returns:
            [C3 (stride 8), C4 (stride 16), C5 (stride 32)] feature maps [B, C_k, S / stride, S / stride].
        """
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.TAPS:
                out.append(self.head(x) if i == self.TAPS[-1] else x)
        return out


def build_backbone(name: str, width: float = 1.0) -> nn.Module:
    """A backbone by name and width multiplier.

    Args:
        name: "resnet18", "resnet34" or "mobilenetv2".
        width: positive channel multiplier.

    Returns:
        The backbone module; its ``channels`` are the feature maps' channel counts.

    Raises:
        ValueError: unknown name or a width that is not positive.
    """
    if not isinstance(name, str) or name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
    if not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    if name == "resnet18":
        return ResNet((2, 2, 2, 2), width)
    if name == "resnet34":
        return ResNet((3, 4, 6, 3), width)
    return MobileNetV2(width)
