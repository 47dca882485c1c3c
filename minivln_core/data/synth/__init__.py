"""The embedded synthetic world: procedural houses written in the real R2R/REVERIE/Matterport formats.

`generate_world(out_dir, SynthConfig(...))` writes connectivity graphs, R2R and REVERIE
annotations, BBoxes.json and semantic view/object features that the project's ordinary readers
load, so the whole pipeline runs on a fresh machine without downloads.
"""

from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.synth.layout import CLASS_NAMES, House, build_house
from minivln_core.data.synth.world import generate_world, load_houses, split_houses

__all__ = ["SynthConfig", "generate_world", "load_houses", "split_houses", "build_house", "House", "CLASS_NAMES"]
