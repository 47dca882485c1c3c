"""`SynthConfig`: every knob of the embedded synthetic world, with validation naming the bad key.

Build it like every other config of the project:
`build_config(SynthConfig, yaml_path=..., overrides=["houses=20", "floors=[1, 3]"])`.
Lengths are metres, angles degrees unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minivln_core.config import Validated
from minivln_core.errors import ConfigError


@dataclass(frozen=True)
class SynthConfig(Validated):
    """Size, layout, annotation and feature parameters of a procedurally generated world."""

    # -- world size and randomness ------------------------------------------------------------------
    houses: int = 15                           # number of houses (scans) in the world
    seed: int = 0                              # master seed: same seed -> byte-identical output
    val_unseen_fraction: float = 0.2           # fraction of houses held out as val_unseen (>= 1 house)
    val_seen_fraction: float = 0.16            # fraction of each train house's paths held out as val_seen

    # -- house layout -------------------------------------------------------------------------------
    floors: tuple[int, int] = (1, 2)           # min, max floors per house (inclusive)
    multi_floor_prob: float = 0.35             # chance a house gets more than floors[0] floors
    rooms_per_floor: tuple[int, int] = (6, 8)  # min, max rooms on each floor (inclusive)
    room_width: tuple[float, float] = (3.0, 6.0)  # range of a grid column's width (x extent of its rooms)
    room_depth: tuple[float, float] = (3.0, 6.0)  # range of a grid row's depth (y extent of its rooms)
    floor_height: float = 3.0                  # vertical distance between floors
    camera_height: float = 1.5                 # camera above the floor at every viewpoint
    extra_door_prob: float = 0.25              # chance that two adjacent rooms not joined by the tree get a door
    viewpoints_per_room: tuple[int, int] = (1, 4)  # min, max in-room viewpoints (door/stairs ones come on top)
    room_area_per_viewpoint: float = 9.0       # one more in-room viewpoint per this many square metres
    viewpoint_spacing: float = 1.5             # minimum distance between in-room viewpoints
    max_edge_length: float = 5.0               # longest navigable edge inside a room (line of sight required)
    stair_run: float = 2.4                     # horizontal length of a staircase (capped by the room size)
    objects_per_room: tuple[int, int] = (2, 5)  # min, max objects per room (room-type essentials first)

    # -- visibility (REVERIE boxes) ---------------------------------------------------------------
    max_view_distance: float = 8.0             # objects farther than this from the camera are not annotated
    min_box_pixels: float = 8.0                # both sides of a visible 2-D box must be at least this (px)

    # -- annotations --------------------------------------------------------------------------------
    paths_per_house: int = 50                  # R2R paths drawn per house (train houses split into train/val_seen)
    instructions_per_path: int = 3             # instructions per R2R path and per REVERIE record
    path_hops: tuple[int, int] = (4, 7)        # min, max edges on a path's shortest route (R2R: 4-7)
    path_length: tuple[float, float] = (5.0, 20.0)  # min, max shortest-path length in metres
    reverie_per_house: int = 30                # REVERIE records drawn per house (split like the R2R paths)

    # -- semantic view features ---------------------------------------------------------------------
    feature_dim: int = 768                     # D, width of each view/object feature (768 = ViT-B/16)
    feature_noise: float = 0.1                 # std of the seeded Gaussian noise added to every feature
    room_weight: float = 1.0                   # class weight of the room a view looks into
    object_weight: float = 6.0                 # class weight per unit of image area covered by an object box
    semantic_resolution: tuple[int, int] = (32, 24)  # width, height of the segmentation the view weights come from
    embedding_seed: int = 1234                 # seed of the class embeddings (the stand-in "image encoder");
    #                                            keep it fixed so worlds of different seeds share a feature space

    def validate(self) -> None:
        """Raise ConfigError naming the first key whose value is out of range."""
        _positive_int(self, "houses")
        _at_least(self, "houses", 2, "one train and one val_unseen house are needed")
        _fraction(self, "val_unseen_fraction", open_low=True, open_high=True)
        _fraction(self, "val_seen_fraction", open_high=True)
        _int_range(self, "floors", 1, 4)
        _fraction(self, "multi_floor_prob")
        _int_range(self, "rooms_per_floor", 2, 30)
        _float_range(self, "room_width", 3.0)
        _float_range(self, "room_depth", 3.0)
        _positive(self, "floor_height")
        if not 0.5 <= self.camera_height < self.floor_height:
            raise ConfigError(f"config key 'camera_height': expected 0.5 <= value < floor_height, "
                              f"got {self.camera_height}")
        _fraction(self, "extra_door_prob")
        _int_range(self, "viewpoints_per_room", 1, 8)
        _positive(self, "room_area_per_viewpoint")
        _positive(self, "viewpoint_spacing")
        if self.max_edge_length < self.viewpoint_spacing:
            raise ConfigError(f"config key 'max_edge_length': must be >= viewpoint_spacing "
                              f"({self.viewpoint_spacing}), got {self.max_edge_length}")
        _positive(self, "stair_run")
        _int_range(self, "objects_per_room", 0, 12)
        _positive(self, "max_view_distance")
        _positive(self, "min_box_pixels")
        _positive_int(self, "paths_per_house")
        _positive_int(self, "instructions_per_path")
        _int_range(self, "path_hops", 1, 50)
        _float_range(self, "path_length", 0.0)
        _at_least(self, "reverie_per_house", 0, "")
        _positive_int(self, "feature_dim")
        _at_least(self, "feature_noise", 0.0, "")
        if len(self.semantic_resolution) != 2 or not all(isinstance(v, int) and 1 <= v <= 640
                                                           for v in self.semantic_resolution):
            raise _fail("semantic_resolution", "[width, height] with 1 <= each <= 640", list(self.semantic_resolution))
        _positive(self, "room_weight")
        _at_least(self, "object_weight", 0.0, "")


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"config key '{key}': expected {expected}, got {value!r}")


def _positive_int(cfg: SynthConfig, key: str) -> None:
    value = getattr(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(key, "a positive integer", value)


def _positive(cfg: SynthConfig, key: str) -> None:
    value = getattr(cfg, key)
    if not value > 0:
        raise _fail(key, "a positive number", value)


def _at_least(cfg: SynthConfig, key: str, low: float, why: str) -> None:
    value = getattr(cfg, key)
    if not value >= low:
        raise _fail(key, f"a value >= {low}" + (f" ({why})" if why else ""), value)


def _fraction(cfg: SynthConfig, key: str, open_low: bool = False, open_high: bool = False) -> None:
    value = getattr(cfg, key)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
        raise _fail(key, f"a number in {lo}0, 1{hi}", value)


def _int_range(cfg: SynthConfig, key: str, low: int, high: int) -> None:
    value = getattr(cfg, key)
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise _fail(key, f"[min, max] with {low} <= min <= max <= {high}", list(value))


def _float_range(cfg: SynthConfig, key: str, low: float) -> None:
    value = getattr(cfg, key)
    if len(value) != 2 or not low <= value[0] <= value[1]:
        raise _fail(key, f"[min, max] with {low} <= min <= max", list(value))
