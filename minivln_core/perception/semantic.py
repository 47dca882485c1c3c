"""Object-semantic view features for the 90 Matterport houses, built from REVERIE's BBoxes.json.

No Matterport images exist on this machine, but REVERIE's box annotations say which objects are
visible in which of the 36 views at each viewpoint. This module turns that into a drop-in view
feature file (same HDF5 layout as DUET's ViT features, `data.features`):

* every distinct object name (lower-cased, '_' and '#' -> ' ', whitespace collapsed) is embedded once
  with all-MiniLM-L6-v2 as sentence-transformers does it: mean of the final token embeddings
  over the attention mask, then L2-normalised -> (384,);
* a view's vector is the mean of the embeddings of the *distinct* names visible in it (an
  unweighted bag of names: two views that see the same set of names get identical vectors;
  box areas are ignored because the v1 boxes are noisy), re-normalised to unit length;
* a view with nothing annotated gets one fixed unit vector drawn from a Gaussian with seed
  `NOTHING_SEED` (nearly orthogonal to every name embedding, identical in every file);
* column 384 holds a per-view class target: the index (into the sorted name vocabulary saved
  beside the file as `<out>.classes.json`) of the name with most objects in the view - ties
  broken by larger total box area, then by name - or -1 for an empty view. The root attribute
  `feature_dim = 384` makes readers see only the features; `logits()` returns the target.

Every included viewpoint of every scan gets an entry, annotated or not.

Far field (`far_field` metres > 0): REVERIE boxes only cover objects close to a viewpoint (71% of
the real views are empty, and 72% of the views that face a navigable neighbour), while a camera
looking down a corridor sees what lies further on. With a far field the view vector becomes
[near (D), far (D)] (2D wide): `far` is the same bag-of-names vector over the objects annotated at
the other viewpoints in line of sight (the connectivity file's `visible`) within `far_field` metres
whose direction falls in this view (the view centre angularly closest to it); views with none get a
second fixed vector (`FAR_NOTHING_SEED`). On the real houses this gives about 80% of the
neighbour-facing views an object signal. It approximates far-away perception by the objects near the far viewpoint:
their direction is that viewpoint's, not their own (no 3-D object positions exist here).

What this benchmark measures: whether an agent grounds object *names* in the instruction
("the sink in the bathroom") to directions and graph nodes, i.e. language + topological-map
reasoning with perfect, symbolic object detection. What it cannot measure: visual appearance
(colour, texture, material, "the red chair"), lighting, room geometry and free space (walls,
doors and stairs are only there if annotated as objects), spatial relations inside a view, and
any robustness to viewpoint change or rendering in pixel space. Scores here are an upper bound
on the perception side and say nothing about a camera pipeline.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from minivln_core.data.bboxes import ObjectAnnotation, ObjectIndex
from minivln_core.data.connectivity import ScanGraph, load_scan
from minivln_core.data.features import NUM_VIEWS, feature_key, write_view_features
from minivln_core.data.tokenizer import tokenizer_dir
from minivln_core.errors import DataError
from minivln_core.frames import heading_elevation, view_offsets
from minivln_core.io_utils import atomic_write_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger("minivln.perception")

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
NOTHING_SEED = 36
FAR_NOTHING_SEED = 37
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length; object names are a few tokens


def normalise_name(name: str) -> str:
    """Lower-case, '_' and '#' -> ' ' (REVERIE joins words with '#'), collapse whitespace
    ("Door_Frame " -> "door frame", "bath#cabinet" -> "bath cabinet")."""
    return re.sub(r"[\s_#]+", " ", name).strip().lower()


def nothing_vector(dim: int = EMBED_DIM, seed: int = NOTHING_SEED) -> np.ndarray:
    """The fixed unit vector (dim,) float32 of a view with no annotated object."""
    vec = np.random.default_rng(seed).standard_normal(dim)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


class NameEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings of short strings, loaded offline and cached per string."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 256):
        self.model_dir = Path(model_dir) if model_dir is not None else tokenizer_dir()
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoTokenizer

        from minivln_core.models.text_backbone import load_encoder

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DataError(self.model_dir, f"cannot load the MiniLM tokenizer: {exc}") from None
        self._model = load_encoder(self.model_dir.resolve())  # shared with a policy's text backbone

    @property
    def dim(self) -> int:
        """Embedding width (384)."""
        if self._model is None:
            self._load()
        return int(self._model.config.hidden_size)

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled, L2-normalised embeddings (n, 384) of a batch of strings."""
        import torch

        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        with torch.inference_mode():
            tokens: torch.Tensor = self._model(**enc).last_hidden_state       # (n, T, 384)
        mask = enc["attention_mask"].unsqueeze(-1).to(tokens.dtype)            # (n, T, 1)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)          # (n, 384)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy().astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings (n, 384) float32 of `texts`; each distinct string is encoded once per embedder."""
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            if self._model is None:
                self._load()
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                for text, vec in zip(chunk, self._encode(chunk)):
                    vec.flags.writeable = False
                    self._cache[text] = vec
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[t] for t in texts])


def _visible_names(objects: Mapping[str, ObjectAnnotation]) -> list[tuple[int, str, float]]:
    """(view, normalised name, box area) for every box of every named object at a viewpoint."""
    out = []
    for ann in objects.values():
        name = normalise_name(ann.name)
        if name:
            out.extend((ix, name, box[2] * box[3]) for ix, box in zip(ann.visible_pos, ann.bbox2d))
    return out


def _bag(names: set[str], vocab: Mapping[str, int], table: np.ndarray, nothing: np.ndarray) -> np.ndarray:
    """L2-normalised mean (D,) of the embeddings of distinct `names`, or `nothing` when empty."""
    if not names:
        return nothing
    mean = table[sorted(vocab[n] for n in names)].mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def viewpoint_features(objects: Mapping[str, ObjectAnnotation], vocab: Mapping[str, int],
                       table: np.ndarray, nothing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """View vectors (36, D) and class targets (36,) of one viewpoint; `table` (V, D) holds vocab embeddings."""
    counts: list[Counter[str]] = [Counter() for _ in range(NUM_VIEWS)]
    areas: list[Counter[str]] = [Counter() for _ in range(NUM_VIEWS)]
    for ix, name, area in _visible_names(objects):
        counts[ix][name] += 1
        areas[ix][name] += area
    feats = np.tile(nothing, (NUM_VIEWS, 1))                                   # (36, D)
    targets = np.full(NUM_VIEWS, -1.0, np.float32)                             # (36,)
    for ix in range(NUM_VIEWS):
        if not counts[ix]:
            continue
        feats[ix] = _bag(set(counts[ix]), vocab, table, nothing)              # (D,)
        top = min(counts[ix], key=lambda n: (-counts[ix][n], -areas[ix][n], n))
        targets[ix] = vocab[top]
    return feats, targets


def far_view_names(graph: ScanGraph, viewpoint: str, names_at: Mapping[str, set[str]],
                   radius: float) -> list[set[str]]:
    """Per view (36), the names annotated at the viewpoints in line of sight of `viewpoint` within
    `radius` metres whose direction is closest to that view's centre."""
    out: list[set[str]] = [set() for _ in range(NUM_VIEWS)]
    others = [q for q in graph.visible(viewpoint) if names_at.get(q)]
    if not others:
        return out
    vectors = np.stack([graph.position(q) for q in others]) - graph.position(viewpoint)   # (K, 3)
    dist = np.linalg.norm(vectors, axis=1)                                                  # (K,)
    heading, elevation = heading_elevation(vectors)                                         # (K,), (K,)
    views = np.argmin(view_offsets(heading, elevation)[2], axis=1)                          # (K,)
    for q, d, v in zip(others, dist, views):
        if 0.0 < d <= radius:
            out[int(v)] |= names_at[q]
    return out


def classes_path(out_path: str | Path) -> Path:
    """The sidecar JSON with the class vocabulary of a semantic store."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".classes.json")


def build_semantic_store(bboxes_path: str | Path | ObjectIndex, connectivity_dir: str | Path, out_path: str | Path,
                         scans: Sequence[str] | None = None, embedder: NameEmbedder | None = None,
                         compression: str | None = None, far_field: float = 0.0) -> dict[str, int]:
    """Write (36, 384 + 1) semantic view features - (36, 2 * 384 + 1) with a far field of `far_field`
    metres (module docstring) - for every included viewpoint of `scans`; returns counts.

    `bboxes_path` is BBoxes.json, a BBox/ folder, or an ObjectIndex already read from one."""
    if not far_field >= 0.0:
        raise ValueError(f"far_field must be a distance >= 0 in metres, got {far_field}")
    index = bboxes_path if isinstance(bboxes_path, ObjectIndex) else ObjectIndex.load(bboxes_path)
    bboxes_path = index.source
    scan_list = sorted(set(scans)) if scans is not None else index.scans()
    if not scan_list:
        raise DataError(bboxes_path, "no scans to build (the annotation file lists none)")
    graphs = {scan: load_scan(connectivity_dir, scan) for scan in scan_list}
    names = sorted({name for scan, graph in graphs.items() for vp in graph.viewpoints
                    for _, name, _ in _visible_names(index.objects_at(scan, vp))})
    vocab = {name: i for i, name in enumerate(names)}
    embedder = embedder or NameEmbedder()
    table = embedder.embed(names) if names else np.zeros((0, EMBED_DIM), np.float32)  # (V, D)
    dim = table.shape[1] if names else embedder.dim
    nothing, far_nothing = nothing_vector(dim), nothing_vector(dim, FAR_NOTHING_SEED)
    mapping: dict[str, np.ndarray] = {}
    stats = Counter(scans=len(graphs), names=len(names))
    for scan, graph in graphs.items():
        annotated = set(index.viewpoints(scan))
        stats["annotation_viewpoints_not_included"] += len(annotated - set(graph.viewpoints))
        names_at = ({vp: {name for _, name, _ in _visible_names(index.objects_at(scan, vp))}
                     for vp in graph.viewpoints} if far_field > 0.0 else {})  # only the far field reads it
        for vp in graph.viewpoints:
            feats, targets = viewpoint_features(index.objects_at(scan, vp), vocab, table, nothing)
            if far_field > 0.0:
                far = far_view_names(graph, vp, names_at, far_field)
                feats = np.concatenate([feats, np.stack([_bag(f, vocab, table, far_nothing) for f in far])], axis=1)
                stats["views_with_far_objects"] += sum(bool(f) for f in far)
            mapping[feature_key(scan, vp)] = np.concatenate([feats, targets[:, None]], axis=1)  # (36, D' + 1)
            stats["viewpoints"] += 1
            stats["views_with_objects"] += int((targets >= 0).sum())
    dim = dim * 2 if far_field > 0.0 else dim
    if stats["annotation_viewpoints_not_included"]:
        log.info("%d annotated viewpoints are not included in the connectivity graphs: ignored",
                 stats["annotation_viewpoints_not_included"])
    classes = classes_path(out_path)
    attrs = {"feature_dim": dim, "encoder": ENCODER, "kind": "semantic",
             "view_vector": "L2-normalised mean of the MiniLM embeddings of the distinct visible object names"
                            + (", then the same over the far field" if far_field > 0.0 else ""),
             "far_field_m": float(far_field), "nothing_seed": NOTHING_SEED, "target_column": dim, "num_classes": len(names),
             "classes_file": classes.name}
    atomic_write_json(classes, {"classes": names, "encoder": ENCODER})
    write_view_features(out_path, mapping, attrs=attrs, compression=compression)
    log.info("semantic store %s: %d scans, %d viewpoints, %d names, %d/%d views with objects", out_path,
             stats["scans"], stats["viewpoints"], stats["names"], stats["views_with_objects"],
             stats["viewpoints"] * NUM_VIEWS)
    return dict(stats)
