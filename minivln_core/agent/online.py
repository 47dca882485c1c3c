"""Online navigation on a robot: panorama + pose + waypoint positions -> the agent's next goal.

`OnlineNavigator` is everything the ROS node decides, without ROS: it keeps the
`NavigationAgent` (the decision procedure `minivln eval` uses), a `CachedExtractor` keyed by place
id (the ViT runs once per place), and a `PlaceRegistry` that turns metric positions into the place
ids of the topological map. The node only converts messages into the arguments of
`OnlineNavigator.decide` and its result back into messages.

Frames and angles
-----------------
Positions are metres in the map frame (x east, y north, z up; the Matterport world frame) and
name the panorama camera centre, like the viewpoint positions of the navigation graphs.
Headings follow the project (`minivln_core.frames`): radians clockwise from +y. ROS yaw is
counter-clockwise from +x, so ``heading = pi/2 - yaw`` (`yaw_to_heading`, `heading_to_yaw`).

Elevation: the training environment looks along the view through which the agent left the
previous node (its heading *and* elevation); a robot camera does not tilt, so the navigator
tracks that elevation itself (0 at the start, then the view row of the last hop it commanded),
which keeps online decisions identical to offline rollouts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from minivln_core.agent.agent import Decision, EpisodeState, NavigationAgent
from minivln_core.data.tokenizer import encode_instruction
from minivln_core.env.candidates import Candidate
from minivln_core.errors import ConfigError
from minivln_core.frames import HALF_HFOV, VIEW_ELEVATIONS, VIEW_HEADINGS, heading_elevation, wrap_angle
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.panorama import panorama_views
from minivln_core.perception.vit import CachedExtractor, FeatureExtractor



def candidates_from_positions(origin: np.ndarray, neighbours: Mapping[str, np.ndarray]) -> list[Candidate]:
    """Navigable candidates of a place from metric positions, with `env.candidates.compute_candidates`' rule.

    Each neighbour is assigned to the view (within +-40 deg of heading) that minimises the angular
    offset; the result is sorted by view index, then offset, like the offline environment.
    """
    ids = list(neighbours)
    if not ids:
        return []
    origin = np.asarray(origin, dtype=np.float64)                                  # (3,)
    targets = np.stack([np.asarray(neighbours[k], dtype=np.float64) for k in ids])  # (K, 3)
    vectors = targets - origin                                                     # (K, 3)
    heading, elevation = heading_elevation(vectors)                                # (K,), (K,)
    heading, elevation = np.atleast_1d(heading), np.atleast_1d(elevation)
    rel_h = wrap_angle(heading[:, None] - VIEW_HEADINGS[None, :])                  # (K, 36)
    rel_h = np.atleast_2d(rel_h)
    ang = np.hypot(rel_h, elevation[:, None] - VIEW_ELEVATIONS[None, :])           # (K, 36)
    ang = np.where(np.abs(rel_h) <= HALF_HFOV + 1e-9, ang, np.inf)
    views = np.argmin(ang, axis=1)                                                 # (K,)
    offsets = ang[np.arange(len(ids)), views]                                      # (K,)
    lengths = np.linalg.norm(vectors, axis=1)                                      # (K,)
    order = np.lexsort((offsets, views))
    return [Candidate(viewpoint=ids[k], view_index=int(views[k]), heading=float(heading[k]),
                      elevation=float(elevation[k]), distance=float(lengths[k]), position=targets[k].copy())
            for k in order]


# -- places -----------------------------------------------------------------------------------
class PlaceRegistry:
    """Metric positions -> stable place ids: a position within `tolerance` metres of a known place is it.

    Ids are never reused, not even after `clear()`, so features cached under an old id can never
    be served for a different place.
    """

    def __init__(self, tolerance: float = 0.5, prefix: str = "place"):
        if not tolerance > 0.0:
            raise ValueError(f"place tolerance must be > 0 metres, got {tolerance}")
        self.tolerance = float(tolerance)
        self.prefix = prefix
        self._ids: list[str] = []
        self._positions = np.zeros((0, 3), dtype=np.float64)                     # (P, 3)
        self._next = 0                                                           # next id number

    def __len__(self) -> int:
        return len(self._ids)

    def match(self, position: np.ndarray) -> str | None:
        """The nearest known place within the tolerance, or None."""
        if not self._ids:
            return None
        dist = np.linalg.norm(self._positions - _finite_position(position), axis=1)  # (P,)
        best = int(np.argmin(dist))
        return self._ids[best] if dist[best] <= self.tolerance else None

    def resolve(self, position: np.ndarray) -> str:
        """The matching place id, registering a new place at `position` if none matches."""
        position = _finite_position(position)
        found = self.match(position)
        if found is not None:
            return found
        place = f"{self.prefix}{self._next}"
        self._next += 1
        self._ids.append(place)
        self._positions = np.concatenate([self._positions, position[None]], axis=0)
        return place

    def position(self, place: str) -> np.ndarray:
        """Registered (first-seen) position of a place, (3,) copy."""
        return self._positions[self._ids.index(place)].copy()

    def clear(self) -> None:
        """Forget every place (new ones get new ids)."""
        self._ids = []
        self._positions = np.zeros((0, 3), dtype=np.float64)


def _finite_position(position: np.ndarray) -> np.ndarray:
    position = np.asarray(position, dtype=np.float64)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise ValueError(f"a position must be 3 finite numbers, got {position!r}")
    return position


# -- observations and decisions ------------------------------------------------------------------
@dataclass
class OnlineObservation:
    """What the agent reads at one place (the fields `agent.inputs` documents)."""

    viewpoint: str                    # place id
    position: np.ndarray              # (3,) registered position of the place
    heading: float                    # robot heading, project convention
    elevation: float                  # gaze elevation (see the module docstring)
    view_features: np.ndarray         # (36, D) float32, world-aligned views
    candidates: list[Candidate]       # navigable waypoints, sorted by view index
    objects: None = None              # no object detector on the robot (R2R-style policies)


@dataclass
class OnlineDecision:
    """One decision with its goal in the map frame."""

    decision: Decision                # the agent's decision (target, path, stop, stop_prob, ...)
    place: str                        # place where it was made
    goal_place: str                   # = decision.target
    goal_position: np.ndarray         # (3,) where to drive
    goal_heading: float               # heading along the last hop (project convention)
    moves: bool                       # False when the goal is the current place (a stop in place)
    num_map_nodes: int                # visited + ghost nodes after the update
    latency: float                    # seconds spent (perception + policy)
    encoded: bool                     # the ViT ran (False: cached features of a known place)
    observation: OnlineObservation = field(repr=False)
    margin: float = math.inf          # best minus second-best fused logit (inf: one choice); how near a tie


class OnlineNavigator:
    """Instruction text + panorama + pose + waypoints -> the agent's next goal (batch 1).

    Memory stays bounded over hours: each episode has its own map (`begin`), at most `cache_size`
    places keep their ViT features (LRU), and the place registry, which only matters across
    episodes through those features, is emptied at the start of an episode once it holds more
    than `cache_size` places.
    """

    def __init__(self, agent: NavigationAgent, extractor: FeatureExtractor, place_tolerance: float = 0.5,
                 max_instruction_tokens: int = 200, cache_size: int = 512):
        self.agent = agent
        self.extractor = CachedExtractor(extractor, cache_size)
        self.places = PlaceRegistry(place_tolerance)
        self.max_instruction_tokens = int(max_instruction_tokens)
        self.instruction: str | None = None
        self.state: EpisodeState | None = None
        self._elevation = 0.0
        feat = agent.model.config.image_feat_size
        if agent.model.config.ground_feat_size:
            raise ConfigError("the checkpoint takes instruction-grounding columns, which need object-name view "
                              "features (the real-house benchmark); a camera's image features cannot give them")
        if extractor.dim != feat:
            raise ConfigError(f"the extractor gives {extractor.dim}-d features but the checkpoint expects "
                              f"image_feat_size={feat}: use the extractor the training features were built with")

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, extractor_config: ExtractorConfig, max_steps: int = 15,
                        place_tolerance: float = 0.5, threads: int = 0,
                        cache_size: int = 512, int8: bool = False, runtime: str = "torch") -> "OnlineNavigator":
        """Load the policy with `models.loading.load_policy` and build the extractor from `extractor_config`;
        `runtime` ('torch' | 'onnx') and `int8` pick the policy's inference form
        (`models.inference.for_inference`; `minivln bench` measures them all)."""
        from minivln_core.models.loading import load_policy
        from minivln_core.models.inference import for_inference

        if threads:
            torch.set_num_threads(threads)
        model = for_inference(load_policy(checkpoint), runtime, "int8" if int8 else "fp32", threads)
        extractor = FeatureExtractor(replace(extractor_config, threads=threads or extractor_config.threads))
        return cls(NavigationAgent(model, max_steps=max_steps), extractor, place_tolerance, cache_size=cache_size)

    # -- episode ------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while an episode runs (begun and not stopped)."""
        return self.state is not None and not self.state.done

    @property
    def step(self) -> int:
        """Decisions made in the current episode."""
        return 0 if self.state is None else self.state.step

    @property
    def num_map_nodes(self) -> int:
        """Nodes of the current episode's map (0 before the first decision)."""
        return 0 if self.state is None or self.state.graph_map is None else len(self.state.graph_map)

    def begin(self, instruction: str) -> None:
        """Start an episode (preempting any running one); ValueError for an empty instruction."""
        text = instruction.strip() if isinstance(instruction, str) else ""
        if not text:
            raise ValueError("the instruction is empty")
        encoding = encode_instruction(text, self.max_instruction_tokens)
        if len(self.places) > self.extractor.cache.size:
            self.places.clear()
        with torch.inference_mode():
            self.state = self.agent.begin([encoding])[0]
        self.instruction = text
        self._elevation = 0.0

    def cancel(self) -> None:
        """Forget the running episode (the place registry and feature cache are kept)."""
        self.state = None
        self.instruction = None

    # -- perception ---------------------------------------------------------------------------
    def observe(self, panorama: np.ndarray, position: np.ndarray, heading: float,
                waypoints: Sequence[np.ndarray]) -> tuple[OnlineObservation, bool]:
        """Build the observation at the robot's place; returns it and whether the ViT ran."""
        pano = np.asarray(panorama)
        if pano.ndim != 3 or pano.shape[2] != 3 or pano.dtype != np.uint8 or pano.shape[1] != 2 * pano.shape[0]:
            raise ValueError(f"the panorama must be an equirectangular (H, 2H, 3) uint8 RGB image, got "
                             f"{pano.shape} {pano.dtype}")
        if not math.isfinite(heading):
            raise ValueError(f"the heading must be finite, got {heading}")
        place = self.places.resolve(position)
        neighbours: dict[str, np.ndarray] = {}
        for wp in waypoints:
            wp_place = self.places.resolve(wp)
            if wp_place != place and wp_place not in neighbours:
                neighbours[wp_place] = self.places.position(wp_place)
        origin = self.places.position(place)
        misses = self.extractor.misses
        feats = self.extractor.encode_viewpoint(
            place, lambda: panorama_views(pano, heading, self.extractor.extractor.image_size))  # (36, D)
        obs = OnlineObservation(place, origin, float(heading), self._elevation, feats,
                                candidates_from_positions(origin, neighbours))
        return obs, self.extractor.misses != misses

    def decide(self, panorama: np.ndarray, position: np.ndarray, heading: float,
               waypoints: Sequence[np.ndarray]) -> OnlineDecision:
        """One decision of the running episode from the robot's current panorama, pose and waypoints."""
        if not self.active:
            raise RuntimeError("no running episode: call begin(instruction) first")
        started = time.perf_counter()
        obs, encoded = self.observe(panorama, position, heading, waypoints)
        gmap = self.state.graph_map
        if gmap is not None and obs.viewpoint not in gmap:
            raise ValueError(f"the robot is at {np.round(obs.position, 2).tolist()}, a place never seen as a "
                             "waypoint of this episode's map: it did not arrive where it was sent")
        with torch.inference_mode():
            result = self.agent.step([self.state], [obs])
        decision, margin = result.decisions[0], _logit_margin(result.outputs.fused_logits[0])
        gmap = self.state.graph_map
        goal_heading, elevation = obs.heading, self._elevation
        if decision.path:
            hops = [obs.viewpoint] + decision.path
            last = candidates_from_positions(gmap.position(hops[-2]), {hops[-1]: gmap.position(hops[-1])})[0]
            goal_heading, elevation = last.heading, float(VIEW_ELEVATIONS[last.view_index])
        self._elevation = elevation
        return OnlineDecision(decision, obs.viewpoint, decision.target, gmap.position(decision.target).copy(),
                              float(goal_heading), bool(decision.path), len(gmap),
                              time.perf_counter() - started, encoded, obs, margin)


def _logit_margin(logits: torch.Tensor) -> float:
    """Best minus second-best of the finite logits of one decision (N,); inf with a single choice."""
    finite = logits[torch.isfinite(logits)].float()
    if finite.numel() < 2:
        return math.inf
    top = torch.topk(finite, 2).values
    return float(top[0] - top[1])
