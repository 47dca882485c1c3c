"""Which samples a training step draws: a pure function of (seed, step), the same in every process."""

from __future__ import annotations

import numpy as np

from minivln_core.train.trainer import step_seed


def global_batch(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Indices of the step's global batch: epochs of seeded permutations, a pure function of step."""
    start = step * batch
    out: list[int] = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        order = np.random.default_rng(step_seed(seed, epoch, 7)).permutation(n)
        out.extend(int(i) for i in order[offset: offset + batch - len(out)])
    return out
