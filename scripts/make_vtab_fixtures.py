#!/usr/bin/env python3
"""Reference fixtures for the image-file preprocessing of datasets/ (tests/test_vtab.c), computed by PIL.

  /usr/bin/python3 scripts/make_vtab_fixtures.py   # writes tests/fixtures/vtab_resize.bin, vtab_sample.jpg,
                                                   # vtab_sample_pil.bin

What torchvision's VTAB-1k pipelines (NOAH / SPT) do to an image is PIL's
Image.open(f).convert("RGB").resize((224, 224), Image.BICUBIC); datasets/resize.c claims to reproduce it bit
for bit. The fixtures (u8, raw, row-major (h, w, c)):
  vtab_resize.bin      a random 13x17 RGB image (seed 0), then PIL BICUBIC resizes of it to (h, w) =
                       (6, 8), (29, 31), (13, 5), (4, 17) in that order (down, up, one axis each)
  vtab_sample.jpg      a 20x24 RGB JPEG (quality 85, PIL's encoder: 4:2:0)
  vtab_sample_pil.bin  PIL's decode of it (20x24x3), then convert("RGB").resize((16, 16), BICUBIC)
                       (16x16x3), then convert("L").resize((16, 16), BICUBIC) (16x16x1)
Needs PIL and numpy (Debian's python3-pil, python3-numpy); the tests never need Python.
"""
import os

import numpy as np
from PIL import Image

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
rng = np.random.default_rng(0)
src = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
im = Image.fromarray(src, "RGB")
blobs = [src.tobytes()]
for h, w in [(6, 8), (29, 31), (13, 5), (4, 17)]:
    blobs.append(np.asarray(im.resize((w, h), Image.BICUBIC)).tobytes())
with open(os.path.join(out, "vtab_resize.bin"), "wb") as f:
    f.write(b"".join(blobs))

yy, xx = np.mgrid[0:20, 0:24]
pic = np.stack([xx * 10, yy * 12, (xx * yy) % 256], axis=-1).astype(np.uint8)
jpg = os.path.join(out, "vtab_sample.jpg")
Image.fromarray(pic, "RGB").save(jpg, quality=85)
dec = Image.open(jpg)
rgb = dec.convert("RGB")
with open(os.path.join(out, "vtab_sample_pil.bin"), "wb") as f:
    f.write(np.asarray(rgb).tobytes())
    f.write(np.asarray(rgb.resize((16, 16), Image.BICUBIC)).tobytes())
    f.write(np.asarray(dec.convert("L").resize((16, 16), Image.BICUBIC)).tobytes())
print("wrote", out)
