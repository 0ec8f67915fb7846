"""dualinpaint: a dual-path (PICNet-style) GAN inpainter.

Conventions used everywhere in this package:
- images are float tensors, NCHW, RGB, values in [-1, 1];
- masks are float tensors N×1×H×W with values in {0, 1}, **1 = hole** (pixels to fill);
- mask files are white = hole. Conversions happen only at the edges (reading, writing, web).
"""

__version__ = "0.1.0"
