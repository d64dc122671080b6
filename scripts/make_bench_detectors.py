"""Random-weight TorchScript networks with the architecture and call signatures of the real metric networks, for
measuring `hessian-gan evaluate` throughput where the real files cannot be downloaded (numbers from them are
meaningless; only the images/s are).

    python scripts/make_bench_detectors.py OUT_DIR

writes OUT_DIR/bench-inception.pt (Inception-v3 as in torchvision / the TF graph: 299x299 input resized inside,
2048-d pool features; uint8 input) and OUT_DIR/bench-vgg16.pt (VGG16 conv stack with LPIPS taps relu1_2 ... relu5_3,
channel-normalised; float [0, 255] input). Needs only torch.
"""

import os
import sys
from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class Conv(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BlockA(nn.Module):
    def __init__(self, cin, pool):
        super().__init__()
        self.b1 = Conv(cin, 64, 1)
        self.b5 = nn.Sequential(Conv(cin, 48, 1), Conv(48, 64, 5, padding=2))
        self.b3 = nn.Sequential(Conv(cin, 64, 1), Conv(64, 96, 3, padding=1), Conv(96, 96, 3, padding=1))
        self.bp = Conv(cin, pool, 1)

    def forward(self, x):
        p = self.bp(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), p], 1)


class BlockB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b3 = Conv(cin, 384, 3, stride=2)
        self.bd = nn.Sequential(Conv(cin, 64, 1), Conv(64, 96, 3, padding=1), Conv(96, 96, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, 2)], 1)


class BlockC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.b1 = Conv(cin, 192, 1)
        self.b7 = nn.Sequential(
            Conv(cin, c7, 1), Conv(c7, c7, (1, 7), padding=(0, 3)), Conv(c7, 192, (7, 1), padding=(3, 0))
        )
        self.bd = nn.Sequential(
            Conv(cin, c7, 1),
            Conv(c7, c7, (7, 1), padding=(3, 0)),
            Conv(c7, c7, (1, 7), padding=(0, 3)),
            Conv(c7, c7, (7, 1), padding=(3, 0)),
            Conv(c7, 192, (1, 7), padding=(0, 3)),
        )
        self.bp = Conv(cin, 192, 1)

    def forward(self, x):
        p = self.bp(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.b1(x), self.b7(x), self.bd(x), p], 1)


class BlockD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b3 = nn.Sequential(Conv(cin, 192, 1), Conv(192, 320, 3, stride=2))
        self.b7 = nn.Sequential(
            Conv(cin, 192, 1),
            Conv(192, 192, (1, 7), padding=(0, 3)),
            Conv(192, 192, (7, 1), padding=(3, 0)),
            Conv(192, 192, 3, stride=2),
        )

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class BlockE(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b1 = Conv(cin, 320, 1)
        self.b3 = Conv(cin, 384, 1)
        self.b3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.b3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.bd1 = Conv(cin, 448, 1)
        self.bd2 = Conv(448, 384, 3, padding=1)
        self.bda = Conv(384, 384, (1, 3), padding=(0, 1))
        self.bdb = Conv(384, 384, (3, 1), padding=(1, 0))
        self.bp = Conv(cin, 192, 1)

    def forward(self, x):
        b3 = self.b3(x)
        d = self.bd2(self.bd1(x))
        p = self.bp(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.b1(x), self.b3a(b3), self.b3b(b3), self.bda(d), self.bdb(d), p], 1)


class BenchInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            Conv(3, 32, 3, stride=2), Conv(32, 32, 3), Conv(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
            Conv(64, 80, 1), Conv(80, 192, 3), nn.MaxPool2d(3, 2),
        )
        self.blocks = nn.Sequential(
            BlockA(192, 32), BlockA(256, 64), BlockA(288, 64), BlockB(288),
            BlockC(768, 128), BlockC(768, 160), BlockC(768, 160), BlockC(768, 192),
            BlockD(768), BlockE(1280), BlockE(2048),
        )
        self.fc = nn.Linear(2048, 1008)

    def forward(
        self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
        no_output_bias: bool = False,
    ) -> torch.Tensor:
        assert img.dtype == torch.uint8
        x = img.to(torch.float32)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x / 127.5 - 1.0
        x = self.blocks(self.stem(x))
        features = x.mean(dim=[2, 3])
        if return_features:
            return features
        return self.fc(features)


class BenchVGG(nn.Module):
    def __init__(self):
        super().__init__()
        cfg = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
        stages = []
        cin = 3
        for widths in cfg:
            layers = []
            for w in widths:
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU()]
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = img
        if resize_images:
            x = F.interpolate(x, size=(224, 224), mode="area")
        x = x / 127.5 - 1.0
        taps: List[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = F.max_pool2d(x, 2, 2)
            x = stage(x)
            t = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            taps.append((t / float(t.shape[2] * t.shape[3]) ** 0.5).flatten(1))
        return torch.cat(taps, 1)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.script(BenchInception().eval()).save(os.path.join(out, "bench-inception.pt"))
    torch.jit.script(BenchVGG().eval()).save(os.path.join(out, "bench-vgg16.pt"))


if __name__ == "__main__":
    main()
