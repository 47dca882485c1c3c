"""One path from a panorama to 36 view features, shared by offline feature files and the robot.

A robot (or the simulated one) captures an equirectangular panorama centred on its heading; it
is sliced into the 36 world-aligned Matterport views at the size the extractor's preprocessing
wants, then encoded. `minivln features --world` renders each synthetic viewpoint's panorama and
calls the same function, so a policy trained on the feature file sees on the robot exactly the
features it was trained on.
"""

from __future__ import annotations

import math

import numpy as np

from minivln_core.perception.equirect import slice_equirect

# Equirect width used for synthetic panoramas: a multiple of 12 so that headings on the 30-degree
# view grid shift the panorama by whole pixel columns (slices then match bit for bit).
DEFAULT_PANO_WIDTH = 768


def view_size(image_size: int) -> tuple[int, int]:
    """(width, height) of a 4:3 view whose shorter side the ViT resize maps to 248/224 x image_size."""
    height = int(math.ceil(image_size * 248 / 224))
    return int(round(height * 4 / 3)), height


def panorama_views(pano: np.ndarray, heading: float, image_size: int) -> list[np.ndarray]:
    """(H, W, 3) RGB panorama centred on `heading` -> 36 world-aligned views sized for the extractor."""
    width, height = view_size(image_size)
    return slice_equirect(pano, heading=heading, width=width, height=height)


def encode_panorama(extractor, pano: np.ndarray, heading: float) -> np.ndarray:
    """(H, W, 3) RGB panorama -> (36, D) float32 view features (the robot's per-place perception)."""
    return extractor.encode(panorama_views(pano, heading, extractor.image_size))  # (36, D)
