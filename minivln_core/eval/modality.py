"""Input ablations that show what a policy relies on: no vision ("blind") or no language.

They are explicit experiment switches, not data handling: a blind run replaces every view feature
by zeros on purpose (a missing viewpoint is still an error), a language-blind run replaces every
instruction by the empty one ([CLS] [SEP]).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from minivln_core.data.episodes import Episode
from minivln_core.data.tokenizer import CLS_ID, SEP_ID

Ablation = Literal["none", "blind", "no_language"]


class BlindFeatures:
    """Wraps a view-feature store: same (36, D) shape and the same errors, all values zero."""

    def __init__(self, store):
        self.store = store

    def get(self, scan: str, viewpoint: str) -> np.ndarray:
        return np.zeros_like(self.store.get(scan, viewpoint))

    def __getattr__(self, name):
        return getattr(self.store, name)


def ablate_episodes(episodes: list[Episode], ablation: Ablation) -> list[Episode]:
    """Episodes with their instructions removed for 'no_language' (unchanged otherwise)."""
    if ablation != "no_language":
        return episodes
    return [replace(ep, instruction="", instr_encoding=[CLS_ID, SEP_ID]) for ep in episodes]


def ablate_features(store, ablation: Ablation):
    """The store, or a zeroing wrapper for 'blind'."""
    return BlindFeatures(store) if ablation == "blind" else store
