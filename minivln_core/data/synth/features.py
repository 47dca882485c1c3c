"""Semantic stand-ins for ViT features: view and object vectors built from seeded class embeddings.

Every class (room type or object kind, `CLASS_NAMES`) has a fixed Gaussian embedding of width D
(seeded by `embedding_seed`, the stand-in for a frozen image encoder). A view's class weights
come from a perfect segmentation of it (`Renderer.segment_views` at `semantic_resolution`: the
same ray caster as the images, so a view sees through doorways into the next room exactly as its
image does): `room_weight` x (fraction of the pixels in each room, by room type) plus
`object_weight` x (fraction of the pixels showing each object, by object kind); the feature is
the weight-normalised sum of the embeddings plus Gaussian noise (std `feature_noise`).

View datasets are (36, D + C): D feature columns, then C columns of class log-probabilities
log(p + 1e-4) with p the normalised class weights, so softmax(logits) ~ p is a soft target for
masked view classification and argmax is the dominant class. The root attribute `feature_dim` = D
makes `ViewFeatureStore.get` return the features and `.logits` the class columns. Object datasets
are (n, D + C) the same way (embedding of the object's class + noise, one-hot log-probabilities).
"""

from __future__ import annotations

import math

import numpy as np

from minivln_core.data.features import ObjectFeatures, feature_key
from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.synth.layout import CLASS_INDEX, CLASS_NAMES, House
from minivln_core.data.synth.visibility import Sighting

NUM_CLASSES = len(CLASS_NAMES)
_LOG_EPS = 1e-4


def class_embeddings(cfg: SynthConfig) -> np.ndarray:
    """Fixed class embeddings, (C, D) float64 with unit-variance entries."""
    rng = np.random.default_rng([cfg.embedding_seed, cfg.feature_dim])
    return rng.standard_normal((NUM_CLASSES, cfg.feature_dim))


def view_class_weights(house: House, rooms: np.ndarray, objects: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """Class weights of the 36 views of a viewpoint, (36, C), from its segmentation: rooms (36, h, w)
    (room index per pixel) and objects (36, h, w) (object index per pixel, -1 for structure)."""
    room_class = np.array([CLASS_INDEX[r.kind] for r in house.rooms])                   # (R,)
    obj_class = np.array([CLASS_INDEX[o.name] for o in house.objects] + [0])            # (n_obj + 1,)
    flat_rooms = room_class[rooms.reshape(36, -1)]                                      # (36, P) class ids
    flat_objs = objects.reshape(36, -1)                                                 # (36, P)
    pixels = flat_rooms.shape[1]
    weights = np.zeros((36, NUM_CLASSES))                                               # (36, C)
    views = np.repeat(np.arange(36), pixels)
    np.add.at(weights, (views, flat_rooms.ravel()), cfg.room_weight / pixels)
    shown = flat_objs.ravel() >= 0
    np.add.at(weights, (views[shown], obj_class[flat_objs.ravel()[shown]]), cfg.object_weight / pixels)
    return weights


def class_log_probs(weights: np.ndarray) -> np.ndarray:
    """log(p + eps) of weights normalised over the last axis (any leading shape)."""
    p = weights / weights.sum(axis=-1, keepdims=True)
    return np.log(p + _LOG_EPS)


def view_labels(weights: np.ndarray) -> np.ndarray:
    """Dominant class index of each view, (36,) int."""
    return np.argmax(weights, axis=-1)


def house_view_features(house: House, cfg: SynthConfig, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """{"<scan>_<vp>": (36, D + C) float32} for every viewpoint of the house."""
    from minivln_core.data.synth.render import Renderer

    rng = np.random.default_rng([cfg.seed, house.index, 3])
    width, height = cfg.semantic_resolution
    renderer = Renderer(house, width=width, height=height)
    out = {}
    for i, vp in enumerate(house.viewpoints):
        weights = view_class_weights(house, *renderer.segment_views(i), cfg)      # (36, C)
        p = weights / weights.sum(axis=1, keepdims=True)                          # (36, C)
        feats = p @ embeddings + cfg.feature_noise * rng.standard_normal((36, cfg.feature_dim))  # (36, D)
        out[feature_key(house.scan, vp.vp_id)] = np.concatenate(
            [feats, class_log_probs(weights)], axis=1).astype(np.float32)
    return out


def house_object_features(house: House, sightings: list[list[Sighting]], cfg: SynthConfig,
                          embeddings: np.ndarray) -> dict[str, ObjectFeatures]:
    """{"<scan>_<vp>": ObjectFeatures} for viewpoints that see at least one object."""
    rng = np.random.default_rng([cfg.seed, house.index, 4])
    out = {}
    for i, vp in enumerate(house.viewpoints):
        seen = sorted(sightings[i], key=lambda s: int(house.objects[s.obj].obj_id))
        if not seen:
            continue
        classes = np.array([CLASS_INDEX[house.objects[s.obj].name] for s in seen])       # (n,)
        onehot = np.zeros((len(seen), NUM_CLASSES))
        onehot[np.arange(len(seen)), classes] = 1.0                                      # (n, C)
        feats = embeddings[classes] + cfg.feature_noise * rng.standard_normal((len(seen), cfg.feature_dim))
        boxes = np.array([s.largest()[1] for s in seen], dtype=np.float32)               # (n, 4) x, y, w, h
        directions = np.array([[_wrap_2pi(s.heading), s.elevation] for s in seen], dtype=np.float32)  # (n, 2)
        out[feature_key(house.scan, vp.vp_id)] = ObjectFeatures(
            features=np.concatenate([feats, np.log(onehot + _LOG_EPS)], axis=1).astype(np.float32),
            obj_ids=[house.objects[s.obj].obj_id for s in seen], directions=directions,
            sizes=boxes[:, 2:4].copy(), bboxes=boxes)
    return out


def _wrap_2pi(angle: float) -> float:
    """Heading in [0, 2pi) like the simulator's absolute headings."""
    return angle % (2 * math.pi)
