"""Settings of a replay: which topics hold what, and the navigator settings the recording used.

Defaults equal the nodes' parameters (config/navigator.yaml, config/sim_robot.yaml), so a bag
recorded by `sim_robot` or by `ros2 bag record` next to the default nodes replays without any
setting. `minivln replay --config FILE --set topics.odom=/robot1/odom` overrides them
(`minivln_core.config.build_config`; an unknown key is an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minivln_core.config import Validated
from minivln_core.errors import ConfigError
from minivln_core.perception.config import parse_variant
from minivln_core.perception.variant_choice import AUTO
from minivln_core.robot.messages import BagTopics


@dataclass(frozen=True)
class ReplayConfig(Validated):
    """What a replay needs besides the bag, the checkpoint and the episodes."""

    topics: BagTopics = field(default_factory=BagTopics)
    map_frame: str = "map"           # frame of odometry, waypoints and goals
    max_steps: int = 15              # the navigator's max_steps (must equal the recording's)
    place_tolerance: float = 0.5     # the navigator's place_tolerance, metres
    match_tolerance: float = 0.5     # metres from a recorded pose to a place of the building
    max_pano_width: int = 4096       # the navigator's max_pano_width default (wider panoramas are dropped)
    max_waypoints: int = 64          # the navigator's max_waypoints (larger sets are dropped)
    max_instruction_chars: int = 2000  # the navigator's max_instruction_chars (longer instructions are dropped)
    feature_cache_size: int = 512    # the navigator's feature_cache_size (places whose features are kept)
    threads: int = 0                 # torch threads (0 = torch default)
    # the navigator's extractor_variant (must run the ViT as the recording did): "auto" picks as the node
    # does on this machine (perception/variant_choice.py), "" = as recorded with the checkpoint
    extractor_variant: str = AUTO
    # open loop: |recorded - replayed| stop probability above which a decision was replayed from another
    # state than the node's. The same computation gives the same float32 number (0 difference measured;
    # 1 vs 2 threads: <= 2.4e-7); the state differences of issue 20 moved it by 1e-5 to 6e-2. A node
    # running the onnx or int8 policy rounds differently: raise it (e.g. 1e-3) for those bags.
    state_tolerance: float = 1e-6

    def validate(self) -> None:
        """ConfigError naming the first bad key."""
        if self.max_steps < 1:
            raise ConfigError(f"config key 'max_steps': must be >= 1, got {self.max_steps}")
        if not self.state_tolerance >= 0.0:
            raise ConfigError(f"config key 'state_tolerance': must be >= 0, got {self.state_tolerance}")
        for name in ("place_tolerance", "match_tolerance"):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f"config key '{name}': must be > 0 metres, got {getattr(self, name)}")
        if self.extractor_variant not in ("", AUTO):
            try:
                parse_variant(self.extractor_variant)
            except ConfigError as exc:
                raise ConfigError(f"config key 'extractor_variant': {exc}") from None
        for name, low in (("max_pano_width", 24), ("max_waypoints", 1), ("max_instruction_chars", 1),
                          ("feature_cache_size", 0), ("threads", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"config key '{name}': must be >= {low}, got {getattr(self, name)}")
        for name, value in vars(self.topics).items():
            if not value.strip("/") or " " in value:
                raise ConfigError(f"config key 'topics.{name}': {value!r} is not a topic name")
