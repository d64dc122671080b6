"""A random-weight BigGAN 128 generator at the reference's full size (ch 96, 1000 classes) as a G_ema.pth state
dict, for speed checks of `discover` on BigGAN where the real 138k checkpoint is not available (scripts/gpu-check.sh).
Its images mean nothing. The architecture and key names are those of tests/fixtures/make_biggan_fixture.py, whose
random_state_dict is reused with the full-size constants.

Usage: python scripts/make_random_biggan.py OUT.pth
"""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
import make_biggan_fixture as fixture  # noqa: E402

fixture.CH = 96
fixture.N_CLASSES = 1000
sd = fixture.random_state_dict(torch.Generator().manual_seed(0))
out = sys.argv[1]
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
torch.save(sd, out)
print(f"{out}: {len(sd)} tensors, {sum(t.numel() for t in sd.values()) / 1e6:.1f}M values")
