"""Pen strokes: smooth curves through control points, for drawing digits and non-digits."""

from __future__ import annotations

import numpy as np


def smooth_curve(points: np.ndarray, per_segment: int = 5) -> np.ndarray:
    """A Catmull-Rom curve through the points (the first and last repeated as its ends)."""
    p = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
    out.append(points[-1:])
    return np.vstack(out)
