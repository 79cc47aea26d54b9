"""Deskewing by image moments (LeCun et al., 1998): each digit's slant sheared away and its centre of
mass moved to the image centre; the baselines' optional first step."""

from __future__ import annotations

import numpy as np

SIDE = 28

# Pixel row and column coordinates, flattened like the images.
_ROWS, _COLS = (grid.ravel().astype(np.float64) for grid in np.mgrid[:SIDE, :SIDE])


def image_moments(images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Centre of mass (row, column), row variance and row-column covariance of each image.

    ``images`` is (N, 784) or (N, 28, 28); blank images get a centre of mass in the middle and zero
    variances.
    """
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    mass = flat.sum(axis=1)
    blank = mass == 0
    mass[blank] = 1.0
    row, col = flat @ _ROWS / mass, flat @ _COLS / mass
    row[blank] = col[blank] = (SIDE - 1) / 2
    row_var = flat @ _ROWS**2 / mass - row**2
    row_col = flat @ (_ROWS * _COLS) / mass - row * col
    return row, col, row_var, row_col


def skew(images: np.ndarray) -> np.ndarray:
    """Slant of each digit: columns moved per row down, from image moments (0 for an upright digit)."""
    _, _, row_var, row_col = image_moments(images)
    return np.divide(row_col, row_var, out=np.zeros_like(row_col), where=row_var > 1e-9)


def deskew(images: np.ndarray) -> np.ndarray:
    """Shear each image so its slant (:func:`skew`) is zero and its centre of mass is the image centre.

    Takes and returns (N, 784) float images; the classic deskewing of LeCun et al. (1998) and of the
    published SVM and k-NN results on MNIST.
    """
    from scipy.ndimage import affine_transform

    images = np.asarray(images, dtype=np.float32)
    row, col, _, _ = image_moments(images)
    slant = skew(images)
    centre = np.array([(SIDE - 1) / 2, (SIDE - 1) / 2])
    out = np.empty_like(images)
    for i, image in enumerate(images.reshape(-1, SIDE, SIDE)):
        # Output pixel p samples input pixel shear @ p + offset; the centre maps to the centre of mass.
        shear = np.array([[1.0, 0.0], [slant[i], 1.0]])
        offset = np.array([row[i], col[i]]) - shear @ centre
        # Bilinear interpolation: unlike splines it cannot overshoot [0, 1].
        out[i] = affine_transform(image, shear, offset=offset, order=1).ravel()
    return out


def deskewer():
    """Deskewing as a stateless pipeline step."""
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(deskew)
