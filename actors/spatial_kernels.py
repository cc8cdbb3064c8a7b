"""The spatial shards' compiled kernel (numba): one candidate pair after another, the verdict
`actors/spatial.py` would otherwise take thirty numpy operations and a GEOS call per open pair
for. A module of its own so that only the processes that query an index import numba (a
quarter of a second) and load the compiled code from numba's cache (another, and 1.4 s to
compile it the first time on a machine); edge workers route to shards without either.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from actors.spatial import NEAR, NEAR_MIN, SECTORS


@numba.njit(cache=True, nogil=True)
def decide(pos: np.ndarray, x: np.ndarray, y: np.ndarray, tombstoned: np.ndarray, frame: np.ndarray,
            bounds: np.ndarray, vertex_start: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """For candidate pairs (area at tree position `pos[i]`, point x[i], y[i]): 1 inside, 0
    outside (or tombstoned), 2 near an edge (`NEAR`), for GEOS's exact test.

    Compiled (numba): the sectors decide most pairs; the rest walk the area's edges with the
    even-odd rule, which for a valid area (what `check_service_area` lets in) agrees with GEOS
    wherever a point is not on or next to the border. Done in numpy, the same was thirty array
    operations a batch, and GEOS's call per open pair cost about a microsecond. Three passes, so
    that the scattered reads of the first two run without branches waiting between them."""
    n = len(pos)
    dx = np.empty(n)
    dy = np.empty(n)
    flat = np.empty(n, dtype=np.int64)
    for i in range(n):
        p = pos[i]
        dx[i], dy[i] = x[i] - frame[p, 0], y[i] - frame[p, 1]
        flat[i] = p * SECTORS + int(math.floor((math.atan2(dy[i], dx[i]) + math.pi)
                                                * (SECTORS / (2 * math.pi)))) % SECTORS
    out = np.zeros(n, dtype=np.int8)
    for i in range(n):
        quantum, f = frame[pos[i], 2], flat[i]
        r2 = dx[i] * dx[i] + dy[i] * dy[i]
        if tombstoned[pos[i]]:
            out[i] = 0
        elif not math.isfinite(quantum):
            out[i] = 2  # an area the sectors cannot judge is too thin for anything but GEOS
        elif r2 < bounds[f, 0] * quantum:
            out[i] = 1
        elif r2 <= bounds[f, 1] * quantum:
            out[i] = 3
    for i in range(n):
        if out[i] == 3:
            p = pos[i]
            near = max(NEAR * math.sqrt(255 * frame[p, 2]), NEAR_MIN)
            out[i] = even_odd(dx[i], dy[i], vertices, vertex_start[p], vertex_start[p + 1], near)
    return out


@numba.njit(cache=True, nogil=True)
def even_odd(px: float, py: float, vertices: np.ndarray, start: int, end: int, near: float) -> int:
    """1 if the point (relative to the area's centre, as the vertices are) is inside the rings
    in vertices[start:end] by the even-odd rule, 0 if outside, 2 if within `near` of an edge.
    An edge whose rows the point's y misses by more than `near` can neither be crossed nor be
    near: two comparisons rule out most edges."""
    inside = False
    for k in range(start, end - 1):
        y0, y1 = float(vertices[k, 1]), float(vertices[k + 1, 1])
        if (py < y0 - near and py < y1 - near) or (py > y0 + near and py > y1 + near):
            continue  # also the gap between two rings: NaN compares false, so that test is next
        if math.isnan(y0) or math.isnan(y1):
            continue
        x0, x1 = float(vertices[k, 0]), float(vertices[k + 1, 0])
        ex, ey, wx, wy = x1 - x0, y1 - y0, px - x0, py - y0
        along, length2 = wx * ex + wy * ey, ex * ex + ey * ey
        if along <= 0:
            close = wx * wx + wy * wy <= near * near
        elif along >= length2:
            close = (px - x1) ** 2 + (py - y1) ** 2 <= near * near
        else:
            close = (wx * ey - wy * ex) ** 2 <= near * near * length2
        if close:
            return 2
        if (y0 > py) != (y1 > py) and (wx * ey - wy * ex > 0) != (ey > 0):
            inside = not inside  # the edge crosses the horizontal line to the point's right
    return 1 if inside else 0
