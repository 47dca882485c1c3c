"""HDF5 feature stores: 36-view panorama features and REVERIE object features, keyed "<scan>_<vp>".

View files (DUET `pth_vit_base_patch16_224_imagenet.hdf5`): one dataset per key, shape (36, C);
rows are view indices 0..35; real files have C = 768 feature columns followed by 1000 ImageNet
logit columns. `feature_dim` selects the first D columns (default: the root attribute
`feature_dim` if present, else all columns); the rest are served by `logits()`.

Object files (DUET `obj.avg.top3.min80_vit_base_patch16_224_imagenet.hdf5`): one dataset per
key, shape (n_obj, C), with attributes `obj_ids` (n_obj strings), `directions` (n_obj, 2: absolute
heading, elevation in rad), `sizes` (n_obj, 2: w, h px) and `bboxes` (n_obj, 4). A viewpoint
without objects may have no dataset at all; that reads as an empty `ObjectFeatures`.

A missing view key is an error (a zero vector would silently poison training); so are wrong
shapes, non-numeric values and non-finite values, and HDF5 errors of a damaged file are
reported as DataError naming the file and the key, never as h5py's own exceptions. Arrays
handed out are float32 and read-only (they live in an LRU cache shared by all callers).
Handles are reopened after fork, so stores can cross into DataLoader worker processes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from minivln_core.errors import DataError
from minivln_core.frames import NUM_VIEWS
from minivln_core.io_utils import atomic_write


def feature_key(scan: str, vp: str) -> str:
    """HDF5 dataset name of a viewpoint."""
    return f"{scan}_{vp}"


def _check_key(path: Any, key: Any) -> str:
    if not isinstance(key, str) or "_" not in key or "/" in key or key.startswith("_") or key.endswith("_"):
        raise DataError(path, f"key {key!r} is not of the form <scan>_<viewpoint>", record=key)
    return key


def _check_numeric(path: Any, values: Any, key: str, field: str | None = None) -> None:
    """DataError unless `values` (an array or an h5py dataset) holds ints or floats."""
    if values.dtype.kind not in "fiu":
        raise DataError(path, f"holds {values.dtype} values, expected numbers", record=key, field=field)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class _H5Store:
    """Shared plumbing: fork-safe lazy handle, key listing and a small LRU cache."""

    def __init__(self, path: str | Path, cache_size: int):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "feature file does not exist")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        self._file: h5py.File | None = None
        self._pid = -1
        self._h5()  # fail early on unreadable files

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(self.path, f"not a readable HDF5 file ({exc})") from None
            self._pid = os.getpid()
            self._cache.clear()
        return self._file

    @contextmanager
    def _reading(self, key: str | None = None) -> Iterator[None]:
        """h5py's errors while reading (damaged metadata or data) -> DataError naming file and key."""
        try:
            yield
        except (OSError, RuntimeError) as exc:
            raise DataError(self.path, f"cannot be read, the HDF5 file is damaged ({exc})", record=key) from None

    def _cached(self, key: Any) -> Any:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
        return value

    def _remember(self, key: Any, value: Any) -> Any:
        if self.cache_size:
            self._cache[key] = value
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value

    def _dataset(self, key: str) -> h5py.Dataset | None:
        with self._reading(key):
            node = self._h5().get(key)
        if node is not None and not isinstance(node, h5py.Dataset):
            raise DataError(self.path, f"'{key}' is a group, expected a dataset", record=key)
        return node

    def _root_dim(self, feature_dim: int | None) -> int | None:
        with self._reading():
            if feature_dim is None and "feature_dim" in self._h5().attrs:
                feature_dim = self._h5().attrs["feature_dim"]
            if isinstance(feature_dim, np.ndarray) and feature_dim.size == 1:
                feature_dim = feature_dim.item()
        if feature_dim is None:
            return None
        integer = isinstance(feature_dim, (int, np.integer)) and not isinstance(feature_dim, (bool, np.bool_))
        if not integer or feature_dim < 1:
            raise DataError(self.path, f"feature_dim must be a positive integer, got {feature_dim!r}",
                            field="feature_dim")
        return int(feature_dim)

    def _first_width(self) -> int | None:
        with self._reading():
            keys = list(self._h5())
        for key in keys:
            node = self._dataset(key)
            if node is not None and node.ndim == 2:
                return int(node.shape[1])
        return None

    def __getstate__(self) -> dict[str, Any]:
        # h5py handles cannot be pickled (spawned DataLoader workers): ship the path, reopen lazily
        state = self.__dict__.copy()
        state.update(_file=None, _pid=-1, _cache=OrderedDict())
        return state

    def keys(self) -> list[str]:
        """All dataset names ("<scan>_<vp>")."""
        with self._reading():
            return list(self._h5().keys())

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple) and len(key) == 2:
            key = feature_key(*key)
        return isinstance(key, str) and key in self._h5()

    def __len__(self) -> int:
        return len(self._h5())

    def close(self) -> None:
        """Close the HDF5 handle (reopened on next use)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._cache.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ViewFeatureStore(_H5Store):
    """Per-viewpoint panorama features: `get(scan, vp)` -> float32 (36, D)."""

    def __init__(self, path: str | Path, feature_dim: int | None = None, cache_size: int = 2048):
        super().__init__(path, cache_size)
        dim = self._root_dim(feature_dim)
        if dim is None:
            dim = self._first_width()
            if dim is None:
                raise DataError(self.path, "contains no (36, D) feature datasets and no feature_dim attribute")
        self._dim = dim

    @property
    def dim(self) -> int:
        """D, the number of feature columns returned by `get`."""
        return self._dim

    def _view_dataset(self, scan: str, vp: str) -> tuple[str, h5py.Dataset]:
        key = feature_key(scan, vp)
        ds = self._dataset(key)
        if ds is None:
            raise DataError(self.path, f"no features for scan {scan}, viewpoint {vp}", record=key)
        if ds.ndim != 2 or ds.shape[0] != NUM_VIEWS or ds.shape[1] < self._dim:
            raise DataError(self.path, f"expected shape ({NUM_VIEWS}, >={self._dim}), got {ds.shape}", record=key)
        _check_numeric(self.path, ds, key)
        return key, ds

    def _read(self, key: str, ds: h5py.Dataset, cols: slice) -> np.ndarray:
        with self._reading(key):
            array = np.asarray(ds[:, cols], dtype=np.float32)  # (36, width of the slice)
        if not np.isfinite(array).all():
            bad = np.argwhere(~np.isfinite(array))[0]
            raise DataError(self.path, f"non-finite value at view {bad[0]}, column {bad[1] + (cols.start or 0)}",
                            record=key)
        return _frozen(array)

    def get(self, scan: str, vp: str) -> np.ndarray:
        """Features of the 36 views, float32 (36, D), read-only."""
        key = feature_key(scan, vp)
        hit = self._cached(key)
        if hit is not None:
            return hit
        key, ds = self._view_dataset(scan, vp)
        return self._remember(key, self._read(key, ds, slice(0, self._dim)))

    def has_logits(self, scan: str, vp: str) -> bool:
        """True if the viewpoint's dataset has columns after the first D."""
        return self._view_dataset(scan, vp)[1].shape[1] > self._dim

    def logits(self, scan: str, vp: str) -> np.ndarray:
        """The columns after the first D (ImageNet logits in DUET files), float32 (36, C - D)."""
        hit = self._cached(("logits", feature_key(scan, vp)))
        if hit is not None:
            return hit
        key, ds = self._view_dataset(scan, vp)
        if ds.shape[1] == self._dim:
            raise DataError(self.path, f"no logit columns after the first {self._dim} feature columns", record=key)
        return self._remember(("logits", key), self._read(key, ds, slice(self._dim, None)))


@dataclass(frozen=True)
class ObjectFeatures:
    """Objects annotated at one viewpoint (n = number of objects, possibly 0)."""

    features: np.ndarray    # (n, D) float32
    obj_ids: list[str]      # n ids
    directions: np.ndarray  # (n, 2) float32: absolute heading, elevation (rad)
    sizes: np.ndarray       # (n, 2) float32: w, h (px)
    bboxes: np.ndarray      # (n, 4) float32: x, y, w, h (px)

    def __len__(self) -> int:
        return len(self.obj_ids)

    @staticmethod
    def empty(dim: int) -> "ObjectFeatures":
        """Zero objects with D-wide features."""
        return ObjectFeatures(np.zeros((0, dim), np.float32), [], np.zeros((0, 2), np.float32),
                              np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32))


_OBJECT_ATTRS = {"directions": 2, "sizes": 2, "bboxes": 4}


def _ids(raw: Any) -> list[str]:
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.asarray(raw).reshape(-1)]


class ObjectFeatureStore(_H5Store):
    """Per-viewpoint object features: `get(scan, vp)` -> ObjectFeatures (empty if the key is absent)."""

    def __init__(self, path: str | Path, feature_dim: int | None = None, cache_size: int = 2048):
        super().__init__(path, cache_size)
        dim = self._root_dim(feature_dim)
        self._dim = dim if dim is not None else (self._first_width() or 0)

    @property
    def dim(self) -> int:
        """D, the number of feature columns returned per object."""
        return self._dim

    def get(self, scan: str, vp: str) -> ObjectFeatures:
        """The viewpoint's objects; ObjectFeatures.empty(D) when the file has no entry for it."""
        key = feature_key(scan, vp)
        hit = self._cached(key)
        if hit is not None:
            return hit
        ds = self._dataset(key)
        if ds is None:
            return self._remember(key, ObjectFeatures.empty(self._dim))
        if ds.ndim != 2 or ds.shape[1] < self._dim:
            raise DataError(self.path, f"expected shape (n_obj, >={self._dim}), got {ds.shape}", record=key)
        n = ds.shape[0]
        _check_numeric(self.path, ds, key, "features")
        with self._reading(key):
            feats = np.asarray(ds[:, : self._dim], dtype=np.float32)  # (n, D)
            attrs = {name: ds.attrs[name] for name in ("obj_ids", *_OBJECT_ATTRS) if name in ds.attrs}
        if "obj_ids" not in attrs:
            raise DataError(self.path, "missing attribute", record=key, field="obj_ids")
        obj_ids = _ids(attrs["obj_ids"])
        if len(obj_ids) != n:
            raise DataError(self.path, f"{len(obj_ids)} ids for {n} objects", record=key, field="obj_ids")
        extra: dict[str, np.ndarray] = {}
        for name, width in _OBJECT_ATTRS.items():
            if name not in attrs:
                raise DataError(self.path, "missing attribute", record=key, field=name)
            value = np.asarray(attrs[name])
            _check_numeric(self.path, value, key, name)
            value = value.astype(np.float32)
            if n == 0 and value.size == 0:
                value = value.reshape(0, width)
            if value.shape != (n, width):
                raise DataError(self.path, f"expected shape ({n}, {width}), got {value.shape}", record=key, field=name)
            extra[name] = value
        for name, value in [("features", feats), *extra.items()]:
            if not np.isfinite(value).all():
                raise DataError(self.path, "non-finite value", record=key, field=name)
        result = ObjectFeatures(_frozen(feats), obj_ids, *(_frozen(extra[k]) for k in _OBJECT_ATTRS))
        return self._remember(key, result)


def _write_attrs(target: h5py.AttributeManager, attrs: Mapping[str, Any] | None) -> None:
    for name, value in (attrs or {}).items():
        target[name] = value


def write_view_features(path: str | Path, mapping: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None,
                        compression: str | None = None) -> None:
    """Write {"<scan>_<vp>": (36, D) array} atomically as float32 datasets (+ root attributes)."""
    arrays: dict[str, np.ndarray] = {}
    width = None
    for key, value in mapping.items():
        _check_key(path, key)
        array = np.asarray(value, dtype=np.float32)  # (36, D)
        if array.ndim != 2 or array.shape[0] != NUM_VIEWS:
            raise DataError(path, f"expected shape ({NUM_VIEWS}, D), got {array.shape}", record=key)
        if width is not None and array.shape[1] != width:
            raise DataError(path, f"width {array.shape[1]} differs from the other entries ({width})", record=key)
        if not np.isfinite(array).all():
            raise DataError(path, "non-finite value", record=key)
        width = array.shape[1]
        arrays[key] = array

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            _write_attrs(f.attrs, attrs)
            for key, array in arrays.items():
                f.create_dataset(key, data=array, compression=compression)

    atomic_write(path, write)


def write_object_features(path: str | Path, mapping: Mapping[str, ObjectFeatures],
                          attrs: Mapping[str, Any] | None = None, compression: str | None = None) -> None:
    """Write {"<scan>_<vp>": ObjectFeatures} atomically; viewpoints without objects are left out."""
    entries: dict[str, ObjectFeatures] = {}
    width = None
    for key, objs in mapping.items():
        _check_key(path, key)
        feats = np.asarray(objs.features, dtype=np.float32)  # (n, D)
        n = len(objs.obj_ids)
        if feats.ndim != 2 or feats.shape[0] != n:
            raise DataError(path, f"features shape {feats.shape} does not match {n} obj_ids", record=key)
        if width is not None and n and feats.shape[1] != width:
            raise DataError(path, f"width {feats.shape[1]} differs from the other entries ({width})", record=key)
        for name, shape_w in _OBJECT_ATTRS.items():
            if np.asarray(getattr(objs, name)).shape != (n, shape_w):
                raise DataError(path, f"expected shape ({n}, {shape_w})", record=key, field=name)
        if not np.isfinite(feats).all():
            raise DataError(path, "non-finite value", record=key, field="features")
        if n:
            width = feats.shape[1]
            entries[key] = objs

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            _write_attrs(f.attrs, attrs)
            for key, objs in entries.items():
                ds = f.create_dataset(key, data=np.asarray(objs.features, np.float32), compression=compression)
                ds.attrs["obj_ids"] = np.array([str(x) for x in objs.obj_ids], dtype=h5py.string_dtype())
                for name in _OBJECT_ATTRS:
                    ds.attrs[name] = np.asarray(getattr(objs, name), dtype=np.float32)

    atomic_write(path, write)
