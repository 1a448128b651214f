"""A bounded cache of the online store's native gather plans.

A plan holds references to the table arrays it reads, so an unbounded cache keyed on every
list a caller ever sent would pin old arrays (a table that grows replaces its arrays) and grow
with the number of distinct lists. Here:
- plans are keyed on the canonical list (sorted, without repeats), so permutations and repeats
  share one plan; at most `size` plans are kept, least recently used out first. A plan lays
  its columns out in the order of the request that first built it (kept when it is rebuilt),
  so the usual caller, who always asks in one order, gets the plan's output as it is;
- a plan whose tables changed generation is rebuilt in place, and every other stale plan is
  dropped then too (and whenever the store reports that a table replaced its arrays), so the
  cache never holds more than the current arrays;
- a caller's own order (repeats included) is a small column map over the canonical plan's
  output, itself kept in a bounded LRU; it references no table.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .tables import Table

Layout = list[tuple[str, int, int]]
# names in the plan's column order -> (native plan, its layout, the tables it reads)
Build = Callable[[tuple[str, ...]], tuple[Any, Layout, Sequence[Table]]]


def _generation(tables: Sequence[Table]) -> int:
    return sum(table.generation for table in tables)


@dataclass
class _Plan:
    plan: Any
    layout: Layout
    tables: tuple[Table, ...]
    generation: int
    order: tuple[str, ...]  # the names in the plan's column order
    serial: int  # which build: a view made against another is remade

    @property
    def stale(self) -> bool:
        return _generation(self.tables) != self.generation


@dataclass
class _View:
    canonical: tuple[str, ...]
    serial: int
    columns: np.ndarray | None  # None: the plan's order is the caller's
    layout: Layout


class PlanCache:
    def __init__(self, size: int = 64, views: int = 256) -> None:
        if size < 1 or views < 1:
            raise ValueError("the plan cache holds at least one plan and one view")
        self.size = size
        self.views = views
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self._views: OrderedDict[tuple, _View] = OrderedDict()
        self._builds = 0

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, entity: str, names: tuple[str, ...], build: Build) -> tuple[Any, np.ndarray | None, Layout]:
        """(plan, columns, layout): the plan's output indexed by `columns` (when not None) is
        `names` in the order asked, described by `layout`."""
        key = (entity, names)
        view = self._views.get(key)
        if view is not None:
            self._views.move_to_end(key)
            canonical = view.canonical
        else:
            canonical = tuple(sorted(set(names)))
        entry = self._plan(entity, canonical, names, build)
        if view is None or view.serial != entry.serial:
            view = self._views[key] = self._view(canonical, names, entry)
            while len(self._views) > self.views:
                self._views.popitem(last=False)
        return entry.plan, view.columns, view.layout

    def _plan(self, entity: str, canonical: tuple[str, ...], names: tuple[str, ...], build: Build) -> _Plan:
        key = (entity, canonical)
        entry = self._plans.get(key)
        if entry is not None and not entry.stale:
            self._plans.move_to_end(key)
            return entry
        order = tuple(dict.fromkeys(names)) if entry is None else entry.order
        if entry is not None:
            del self._plans[key]  # drop the old arrays' references before building anew
        self.drop_stale()
        plan, layout, tables = build(order)
        tables = tuple({id(t): t for t in tables}.values())
        self._builds += 1
        entry = self._plans[key] = _Plan(plan, layout, tables, _generation(tables), order, self._builds)
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)
        return entry

    def drop_stale(self) -> int:
        """Forget every plan that reads replaced arrays; returns how many."""
        stale = [key for key, entry in self._plans.items() if entry.stale]
        for key in stale:
            del self._plans[key]
        return len(stale)

    @staticmethod
    def _view(canonical: tuple[str, ...], names: tuple[str, ...], entry: _Plan) -> _View:
        layout = entry.layout
        if names == entry.order:
            return _View(canonical, entry.serial, None, layout)
        where = {name: (start, width) for name, start, width in layout}
        pieces, out, col = [], [], 0
        for name in names:
            if name not in where:  # not gathered by a plan (a sequence)
                continue
            start, width = where[name]
            pieces.append(np.arange(start, start + width, dtype=np.intp))
            out.append((name, col, width))
            col += width
        columns = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.intp)
        width = sum(w for _, _, w in layout)
        if len(columns) == width and np.array_equal(columns, np.arange(width)):
            return _View(canonical, entry.serial, None, layout)
        return _View(canonical, entry.serial, columns, out)
