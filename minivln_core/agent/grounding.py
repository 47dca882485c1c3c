"""Instruction-to-view grounding columns: how well each panorama token's object names match the
instruction's words, as a few numbers the policy cannot miss (`ModelConfig.ground_feat_size`).

Why: on the real houses the view features are bags of object names embedded by all-MiniLM-L6-v2
(`perception.semantic`), and a policy trained by imitation at a CPU budget learns where R2R paths
go but never learns to match "stop at the sink" to the view that shows a sink (docs/results.md,
session 16: trained blind it scores the same). The match itself needs no learning when words and
names live in one embedding space, so it is computed here and handed to the panorama encoder:

* every lower-case word of the instruction is embedded on its own as the names were
  (`NameEmbedder`: MiniLM, mean-pooled, unit length) -> W (n, 384);
* a token's feature row is split into 384-wide chunks (one for plain semantic views; [near, far]
  with a far field; one for an object) and each chunk c gives cosine similarities s = W c / |c|;
* per chunk, COLUMNS_PER_CHUNK = 4 numbers: max s over the whole instruction, then over its first,
  middle and last third (R2R names landmarks in walking order, so "where the instruction is" can
  be told from which third matches; the last third holds the stopping place).

An empty instruction or an all-zero chunk (the blind / no-language ablations) gives zeros. The
columns only mean something for MiniLM name features: `ground_feat_size` is 4 per 384 columns of
the view features, and any other width is refused.
"""

from __future__ import annotations

import re

import numpy as np

from minivln_core.models.config import GROUND_CHUNK as CHUNK
from minivln_core.models.config import GROUND_COLUMNS_PER_CHUNK as COLUMNS_PER_CHUNK
from minivln_core.models.config import ground_columns

_WORD = re.compile(r"[a-z]+")
# What each of a chunk's COLUMNS_PER_CHUNK numbers is the best match over, in column order.
COLUMN_NAMES = ("whole instruction", "first third", "middle third", "last third")
CACHED_INSTRUCTIONS = 512  # per-instruction word matrices kept (a batch's episodes; words stay cached anyway)


def instruction_words(instruction: str) -> list[str]:
    """Lower-case alphabetic words in order ("Walk past the sofa." -> [walk, past, the, sofa])."""
    return _WORD.findall(instruction.lower())


class InstructionGrounding:
    """Grounding columns of panorama tokens for one policy (`columns` per observation)."""

    def __init__(self, feature_size: int, embedder=None):
        self.feature_size = feature_size
        self.size = ground_columns(feature_size)    # G
        self._embedder = embedder                   # NameEmbedder, built on first use (loads MiniLM)
        self._words: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # instruction -> (W (n, 384), third (n,))

    def _instruction(self, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        """(n, 384) unit word embeddings and each word's third (0, 1, 2), cached per instruction."""
        hit = self._words.get(instruction)
        if hit is None:
            words = instruction_words(instruction)
            if not words:
                hit = np.zeros((0, CHUNK), np.float32), np.zeros(0, np.int64)
            else:
                if self._embedder is None:
                    from minivln_core.perception.semantic import NameEmbedder

                    self._embedder = NameEmbedder()
                thirds = (3 * np.arange(len(words))) // len(words)                  # (n,) 0..2
                hit = self._embedder.embed(words).astype(np.float32), thirds
            if len(self._words) >= CACHED_INSTRUCTIONS:
                self._words.clear()  # the embedder keeps every word's vector: refilling is a lookup
            self._words[instruction] = hit
        return hit

    def columns(self, instruction: str, features: np.ndarray) -> np.ndarray:
        """features (T, F) raw token features, F a multiple of 384 (object rows may be narrower
        than the views: their missing chunks get zeros) -> (T, G) float32 grounding columns."""
        rows, width = features.shape
        if width % CHUNK or width > self.feature_size:
            raise ValueError(f"grounding: token features are {width} wide, expected chunks of {CHUNK} "
                             f"up to {self.feature_size}")
        out = np.zeros((rows, self.size), np.float32)
        words, thirds = self._instruction(instruction)
        if rows == 0 or len(words) == 0:
            return out
        chunks = features.reshape(rows, width // CHUNK, CHUNK).astype(np.float32)        # (T, K, 384)
        norms = np.linalg.norm(chunks, axis=-1, keepdims=True)                          # (T, K, 1)
        unit = np.divide(chunks, norms, out=np.zeros_like(chunks), where=norms > 1e-8)
        sims = unit @ words.T                                                            # (T, K, n)
        cols = np.zeros((rows, width // CHUNK, COLUMNS_PER_CHUNK), np.float32)          # (T, K, 4)
        cols[..., 0] = sims.max(-1)
        for third in range(3):
            pick = thirds == third
            if pick.any():
                cols[..., 1 + third] = sims[..., pick].max(-1)
        out[:, : cols.shape[1] * COLUMNS_PER_CHUNK] = cols.reshape(rows, -1)
        return out
