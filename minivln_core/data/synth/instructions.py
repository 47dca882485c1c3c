"""R2R-style paths with generated instructions, and REVERIE-style object-goal records.

Paths are shortest routes between a start and a goal viewpoint with `path_hops` edges and
`path_length` metres (R2R: 4-7 hops, ~5-20 m). An instruction is read off the route: the first
turn (goal heading vs. start heading), the rooms it exits, crosses and enters (each edge lies in
the room its two viewpoints share; an edge between floors is a staircase), turns at intermediate
viewpoints (heading change over 50 deg) with a nearby object as landmark, objects passed, and where
to stop (next to an object, in a doorway, or in a room). Every phrase type has several wordings
and each instruction of a path draws its own, so the three instructions of a path differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.synth.layout import House
from minivln_core.data.synth.visibility import Sighting

_TURN_MIN = math.radians(50.0)      # heading change that counts as a turn at an intermediate viewpoint
_LANDMARK_RADIUS = 1.5              # an object this close (footprint, horizontally) names a spot
_PASS_RADIUS = 1.2                  # an object centre this close to an edge is "passed"

_START = {"ahead": ["walk forward", "go straight ahead", "walk straight"], "around": ["turn around", "turn all the way around"],
          "left": ["turn left", "go left", "make a left"], "right": ["turn right", "go right", "make a right"]}
_EXIT = ["walk out of the {r}", "exit the {r}", "leave the {r}", "head out of the {r}"]
_THROUGH = ["go through the {r}", "walk through the {r}", "pass through the {r}", "continue through the {r}",
            "cross the {r}"]
_ENTER = ["enter the {r}", "go into the {r}", "walk into the {r}", "head into the {r}"]
_ACROSS = ["walk across the {r}", "go across the {r}", "move through the {r}"]
_STAIRS = {True: ["go up the stairs", "walk up the stairs", "climb the stairs", "head upstairs"],
           False: ["go down the stairs", "walk down the stairs", "head downstairs", "take the stairs down"]}
_TURN = ["turn {d}", "make a {d}", "take a {d}", "go {d}"]
_AT = [" at the {o}", " by the {o}", " near the {o}"]
_PASS = ["walk past the {o}", "pass the {o}", "go past the {o}", "walk by the {o}"]
_STOP_OBJ = ["stop next to the {o}", "wait by the {o}", "stop in front of the {o}", "stop near the {o}",
             "wait beside the {o}"]
_STOP_ROOM = ["stop in the {r}", "wait in the middle of the {r}", "stop once you are in the {r}", "wait inside the {r}"]
_STOP_DOOR = ["wait in the doorway of the {b}", "stop in the doorway to the {b}", "stop at the entrance to the {b}",
              "wait in the doorway between the {a} and the {b}"]
_STOP_PLAIN = ["stop", "wait there", "stop there"]
_AGAIN = ["go through the next {r}", "continue into the next {r}", "walk through another {r}"]
_JOIN = [", ", ", then ", " then "]

OBJECT_VERBS: dict[str, tuple[str, ...]] = {
    "bed": ("make",), "nightstand": ("dust", "wipe"), "dresser": ("dust", "open"), "wardrobe": ("open", "close"),
    "lamp": ("turn on", "turn off"), "plant": ("water",), "mirror": ("clean", "wipe"), "painting": ("straighten", "dust"),
    "toilet": ("clean", "flush"), "sink": ("clean", "wipe"), "bathtub": ("clean", "fill"), "shower": ("clean", "turn off"),
    "towel": ("fold", "hang up"), "fridge": ("open", "clean"), "stove": ("turn off", "clean"), "counter": ("wipe", "clean"),
    "table": ("wipe", "clear", "set"), "chair": ("move", "push in"), "sofa": ("vacuum", "tidy"), "armchair": ("move", "clean"),
    "coffee table": ("clear", "wipe"), "tv": ("turn off", "turn on"), "fireplace": ("clean",), "bookshelf": ("dust", "tidy"),
    "desk": ("tidy", "clear"), "office chair": ("push in", "move"), "cabinet": ("open", "close"), "bench": ("wipe", "clean"),
    "coat rack": ("tidy",), "washing machine": ("empty", "start"), "dryer": ("empty", "start"), "shelf": ("dust", "tidy"),
    "laundry basket": ("empty",),
}
_PORTABLE = {"towel", "plant", "chair", "lamp", "laundry basket", "office chair"}
_ORDINALS = ["first", "second", "third", "fourth"]
_REVERIE = ["go to the {r}{f} and {v} the {o}", "{v} the {o} in the {r}{f}", "in the {r}{f}, {v} the {o}",
            "please {v} the {o} in the {r}{f}", "find the {o} in the {r}{f} and {vi}", "walk to the {r}{f} and {v} the {o}"]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _heading(a: np.ndarray, b: np.ndarray) -> float:
    return math.atan2(float(b[0] - a[0]), float(b[1] - a[1]))


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab, ap = b[:2] - a[:2], p[:2] - a[:2]
    t = float(np.clip(np.dot(ap, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(ap - t * ab))


def _join(rng: np.random.Generator, clauses: list[str]) -> str:
    """Clauses -> sentences of 1-3 clauses, capitalised, full stops."""
    sentences, k = [], 0
    while k < len(clauses):
        size = min(int(rng.integers(1, 4)), len(clauses) - k)
        part = clauses[k:k + size]
        text = part[0]
        for i, clause in enumerate(part[1:], start=1):
            text += " and " + clause if i == len(part) - 1 else _pick(rng, _JOIN) + clause
        sentences.append(text[0].upper() + text[1:] + ".")
        k += size
    return " ".join(sentences)


@dataclass
class _Leg:
    room: int | None       # None for a staircase
    edges: list[int]       # edge positions along the path
    up: bool = False


class InstructionWriter:
    """Generates R2R and REVERIE instructions for one house."""

    def __init__(self, house: House):
        self.house = house

    # -- helpers ------------------------------------------------------------------------------
    def _pos(self, vp: int) -> np.ndarray:
        return self.house.viewpoints[vp].position

    def _room_name(self, room: int) -> str:
        return self.house.rooms[room].kind

    def _near_object(self, vp: int, radius: float = _LANDMARK_RADIUS, exclude: str | None = None) -> str | None:
        """Name of the object (in the viewpoint's rooms) whose footprint is nearest, within `radius`."""
        p = self._pos(vp)
        best, best_d = None, radius
        for obj in self.house.objects:
            if obj.room not in self.house.viewpoints[vp].rooms or obj.name == exclude:
                continue
            x0, y0, x1, y1 = obj.footprint()
            d = math.hypot(max(x0 - p[0], 0.0, p[0] - x1), max(y0 - p[1], 0.0, p[1] - y1))
            if d <= best_d:
                best, best_d = obj.name, d
        return best

    def _legs(self, path: list[int]) -> list[_Leg]:
        legs: list[_Leg] = []
        for k, (a, b) in enumerate(zip(path[:-1], path[1:])):
            shared = sorted(set(self.house.viewpoints[a].rooms) & set(self.house.viewpoints[b].rooms))
            room = shared[0] if shared else None
            up = bool(self._pos(b)[2] > self._pos(a)[2])
            if legs and legs[-1].room == room and room is not None:
                legs[-1].edges.append(k)
            else:
                legs.append(_Leg(room, [k], up))
        return legs

    # -- R2R ----------------------------------------------------------------------------------
    def r2r(self, path: list[int], heading: float, rng: np.random.Generator) -> str:
        """One instruction for `path` (viewpoint indices) starting with the agent facing `heading`."""
        house, legs = self.house, self._legs(path)
        headings = [_heading(self._pos(a), self._pos(b)) for a, b in zip(path[:-1], path[1:])]
        clauses: list[tuple[str, bool]] = []   # (text, optional)
        first = _wrap(headings[0] - heading)
        turn = "ahead" if abs(first) < math.radians(40) else "around" if abs(first) > math.radians(135) else (
            "right" if first > 0 else "left")
        if turn != "ahead" or rng.random() < 0.4:
            clauses.append((_pick(rng, _START[turn]), False))
        goal_stop = self._stop(path, legs, rng)
        start_is_door = house.viewpoints[path[0]].kind == "door"
        for i, leg in enumerate(legs):
            k0 = leg.edges[0]
            if k0 > 0:   # a turn where this leg begins
                self._turn_clause(path[k0], headings[k0 - 1], headings[k0], clauses, rng)
            if leg.room is None:
                clauses.append((_pick(rng, _STAIRS[leg.up]), False))
                continue
            name = self._room_name(leg.room)
            exiting = i == 0 and len(legs) > 1 and not start_is_door
            if len(legs) == 1:
                template = _ACROSS
            elif exiting:
                template = _EXIT
            elif i == len(legs) - 1:
                template = _ENTER
            elif i > 0 and legs[i - 1].room is not None and self._room_name(legs[i - 1].room) == name:
                template = _AGAIN
            else:
                template = _THROUGH
            inner: list[tuple[str, bool]] = []   # turns inside the room: before leaving it, else after entering
            for k in leg.edges[1:]:
                self._turn_clause(path[k], headings[k - 1], headings[k], inner, rng)
            main = (_pick(rng, template).format(r=name), False)
            clauses.extend(inner + [main] if exiting else [main] + inner)
            passed = self._passed(path, leg, goal_stop[1])
            if passed and rng.random() < 0.5:
                clauses.append((_pick(rng, _PASS).format(o=passed), True))
        clauses.append((goal_stop[0], False))
        while len(clauses) > 7 and any(opt for _, opt in clauses):   # keep instructions R2R-sized
            drop = max(i for i, (_, opt) in enumerate(clauses) if opt)
            clauses.pop(drop)
        return _join(rng, [text for text, _ in clauses])

    def _turn_clause(self, vp: int, before: float, after: float, clauses: list, rng: np.random.Generator) -> None:
        change = _wrap(after - before)
        if abs(change) < _TURN_MIN or rng.random() > 0.75:
            return
        text = _pick(rng, _TURN).format(d="right" if change > 0 else "left")
        landmark = self._near_object(vp)
        if self.house.viewpoints[vp].kind == "door" and rng.random() < 0.5:
            text += " in the doorway"
        elif landmark is not None:
            text += _pick(rng, _AT).format(o=landmark)
        clauses.append((text, True))

    def _passed(self, path: list[int], leg: _Leg, exclude: str | None) -> str | None:
        """Name of an object of the leg's room close to one of its edges (not the stop object)."""
        for k in leg.edges:
            a, b = self._pos(path[k]), self._pos(path[k + 1])
            for obj in self.house.room_objects(leg.room):
                if obj.name != exclude and _segment_distance(obj.centre, a, b) <= _PASS_RADIUS:
                    return obj.name
        return None

    def _stop(self, path: list[int], legs: list[_Leg], rng: np.random.Generator) -> tuple[str, str | None]:
        """(stop clause, stop object name or None); the clause or the last leg names the goal's room."""
        goal = self.house.viewpoints[path[-1]]
        last_room = legs[-1].room
        if goal.kind == "door":
            a, b = goal.rooms if goal.rooms[1] != last_room else goal.rooms[::-1]
            return _pick(rng, _STOP_DOOR).format(a=self._room_name(a), b=self._room_name(b)), None
        room = goal.rooms[0]
        obj = self._near_object(path[-1])
        if obj is not None:
            text = _pick(rng, _STOP_OBJ).format(o=obj)
            if last_room != room or rng.random() < 0.3:
                text += f" in the {self._room_name(room)}"
            return text, obj
        if last_room == room and len(legs) > 1 and rng.random() < 0.5:
            return _pick(rng, _STOP_PLAIN), None
        return _pick(rng, _STOP_ROOM).format(r=self._room_name(room)), None

    # -- REVERIE ------------------------------------------------------------------------------
    def reverie(self, obj_index: int, rng: np.random.Generator) -> str:
        """A high-level REVERIE instruction naming the object's room (+ floor) and the object."""
        obj = self.house.objects[obj_index]
        room = self.house.rooms[obj.room]
        floor = ""
        if self.house.floors > 1:
            options = [f" on the {_ORDINALS[room.floor]} floor", f" on level {room.floor + 1}"]
            if self.house.floors == 2:
                options.append(" upstairs" if room.floor else " downstairs")
            floor = _pick(rng, options)
        verb = _pick(rng, list(OBJECT_VERBS.get(obj.name, ("find",))))
        words = verb.split()
        verb_it = f"{words[0]} it {' '.join(words[1:])}" if len(words) > 1 else f"{verb} it"
        templates = list(_REVERIE)
        if obj.name in _PORTABLE:
            templates.append("bring me the {o} from the {r}{f}")
        text = _pick(rng, templates).format(r=room.kind, f=floor, o=obj.name, v=verb, vi=verb_it.strip())
        return text[0].upper() + text[1:] + "."


def path_candidates(graph: ScanGraph, cfg: SynthConfig) -> list[tuple[int, int, list[int]]]:
    """(start, goal, path) over all ordered viewpoint pairs whose shortest path fits the hop/length ranges."""
    out = []
    index = graph.index
    for a, start in enumerate(graph.viewpoints):
        for b, goal in enumerate(graph.viewpoints):
            if a == b:
                continue
            length = float(graph.distances[a, b])
            if not cfg.path_length[0] <= length <= cfg.path_length[1]:
                continue
            path = graph.shortest_path(start, goal)
            if cfg.path_hops[0] <= len(path) - 1 <= cfg.path_hops[1]:
                out.append((a, b, [index[vp] for vp in path]))
    return out


def reverie_goals(house: House, sightings: list[list[Sighting]]) -> dict[int, int]:
    """Object index -> goal viewpoint: the in-room viewpoint (else doorway) seeing the object's largest box."""
    best: dict[int, tuple[tuple[bool, int], int]] = {}
    for vp, seen in enumerate(sightings):
        for s in seen:
            if house.objects[s.obj].room not in house.viewpoints[vp].rooms:
                continue
            _, box = s.largest()
            key = (house.viewpoints[vp].kind == "room", box[2] * box[3])
            if s.obj not in best or key > best[s.obj][0]:
                best[s.obj] = (key, vp)
    return {obj: vp for obj, (_, vp) in sorted(best.items())}
