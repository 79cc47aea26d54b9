"""Pen strokes: smooth curves through control points, and digits drawn with them for the page's canvas
(the real-world benchmark's drawn set; digits.negatives draws its letters and marks with them too)."""

from __future__ import annotations

from dataclasses import dataclass

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


# Each digit's ways of writing it: strokes of control points in a unit box (x right, y down), and
# whether the pen moves in curves (smoothed through the points) or straight lines between them.
_DIGIT_SHAPES: dict[int, list[tuple[bool, list[list[tuple[float, float]]]]]] = {
    0: [
        (
            True,
            [
                [
                    (0.5, 0),
                    (0.88, 0.2),
                    (0.95, 0.55),
                    (0.75, 0.92),
                    (0.4, 1),
                    (0.08, 0.75),
                    (0.05, 0.35),
                    (0.3, 0.04),
                    (0.55, 0.02),
                ]
            ],
        )
    ],
    1: [
        (False, [[(0.5, 0), (0.5, 1)]]),
        (False, [[(0.2, 0.22), (0.55, 0), (0.55, 1)]]),
        (False, [[(0.25, 0.2), (0.55, 0), (0.55, 1)], [(0.25, 1), (0.85, 1)]]),
    ],
    2: [
        (
            True,
            [
                [(0.08, 0.25), (0.35, 0.02), (0.72, 0.04), (0.88, 0.3), (0.7, 0.58), (0.3, 0.85), (0.05, 1)],
                [(0.05, 1), (0.95, 0.98)],
            ],
        ),
        (True, [[(0.1, 0.2), (0.45, 0), (0.85, 0.2), (0.6, 0.6), (0.1, 0.98), (0.5, 0.9), (0.95, 1)]]),
    ],
    3: [
        (
            True,
            [
                [
                    (0.1, 0.12),
                    (0.45, 0),
                    (0.85, 0.14),
                    (0.82, 0.36),
                    (0.42, 0.48),
                    (0.88, 0.62),
                    (0.9, 0.86),
                    (0.5, 1),
                    (0.08, 0.88),
                ]
            ],
        )
    ],
    4: [
        (False, [[(0.62, 0), (0.05, 0.66), (0.95, 0.66)], [(0.7, 0.3), (0.7, 1)]]),
        (False, [[(0.12, 0), (0.08, 0.56), (0.92, 0.56)], [(0.74, 0), (0.74, 1)]]),
    ],
    5: [
        (
            True,
            [
                [(0.2, 0.02), (0.15, 0.45), (0.55, 0.36), (0.9, 0.58), (0.85, 0.9), (0.45, 1), (0.08, 0.88)],
                [(0.2, 0.02), (0.88, 0)],
            ],
        )
    ],
    6: [
        (
            True,
            [
                [
                    (0.78, 0.02),
                    (0.4, 0.14),
                    (0.14, 0.5),
                    (0.12, 0.82),
                    (0.42, 1),
                    (0.8, 0.9),
                    (0.86, 0.64),
                    (0.55, 0.48),
                    (0.25, 0.56),
                    (0.12, 0.75),
                ]
            ],
        )
    ],
    7: [
        (False, [[(0.05, 0.02), (0.95, 0), (0.4, 1)]]),
        (False, [[(0.05, 0.02), (0.95, 0), (0.45, 1)], [(0.3, 0.52), (0.85, 0.5)]]),
    ],
    8: [
        (
            True,
            [
                [
                    (0.78, 0.14),
                    (0.5, 0),
                    (0.2, 0.14),
                    (0.28, 0.38),
                    (0.74, 0.62),
                    (0.84, 0.86),
                    (0.5, 1),
                    (0.16, 0.86),
                    (0.26, 0.62),
                    (0.72, 0.38),
                    (0.8, 0.16),
                ]
            ],
        )
    ],
    9: [
        (
            True,
            [
                [
                    (0.86, 0.24),
                    (0.6, 0.02),
                    (0.22, 0.06),
                    (0.14, 0.34),
                    (0.48, 0.5),
                    (0.86, 0.3),
                    (0.86, 0.6),
                    (0.8, 1),
                ]
            ],
        ),
        (False, [[(0.85, 0.2), (0.5, 0), (0.15, 0.15), (0.2, 0.42), (0.6, 0.45), (0.85, 0.2), (0.82, 1)]]),
    ],
}


@dataclass(frozen=True)
class Drawing:
    """A digit to draw on the canvas: strokes of points as fractions of the canvas, and a pen width."""

    label: int
    strokes: list[list[tuple[float, float]]]
    width: int


def drawn_digits(rng: np.random.Generator, count: int, aspect: float = 1.5) -> list[Drawing]:
    """``count`` digits (equally many of each) for a canvas ``aspect`` times wider than tall.

    Each has a random way of writing it, jittered control points, a slant of -15 to +20 degrees, a
    width of 45-95% of its height, a height of 30-90% of the canvas, a random place and a pen 6-36 px
    wide on the page's 420x280 canvas.
    """
    drawings = []
    for n in range(count):
        label = n % 10
        smooth, strokes = _DIGIT_SHAPES[label][int(rng.integers(len(_DIGIT_SHAPES[label])))]
        height = rng.uniform(0.3, 0.9)
        width = height * rng.uniform(0.45, 0.95) / aspect
        slant = np.tan(np.radians(rng.uniform(-15, 20)))
        top = rng.uniform(0.03, 0.97 - height)
        left = rng.uniform(
            0.03 + max(slant, 0) * height / aspect, 0.97 - width + min(slant, 0) * height / aspect
        )
        paths = []
        for stroke in strokes:
            points = np.asarray(stroke, dtype=np.float64) + rng.normal(0, 0.03, (len(stroke), 2))
            if smooth and len(points) > 2:
                points = smooth_curve(points)
            x = left + points[:, 0] * width + slant * (1 - points[:, 1]) * height / aspect
            y = top + points[:, 1] * height
            paths.append(
                [
                    (float(a), float(b))
                    for a, b in zip(np.clip(x, 0.01, 0.99), np.clip(y, 0.01, 0.99), strict=True)
                ]
            )
        drawings.append(Drawing(label, paths, int(rng.integers(6, 37))))
    return drawings
