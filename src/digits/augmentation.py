"""Augmentation on the fly: Keras preprocessing layers plus the distortions of real handwriting
(elastic, stroke width, uneven ink, low resolution), each a batched layer."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from digits import check_choice
from digits.models import AUGMENTATIONS

#: Recipe -> (largest rotation in degrees, largest shift and zoom as fractions of the side).
AFFINE_RANGES = {
    "affine": (10, 0.1, 0.1),
    "elastic": (10, 0.1, 0.1),
    "wide": (20, 0.2, 0.0),
    "handwriting": (12, 0.1, 0.1),
}


def augmentation(kind: str = "affine", seed: int = 0) -> keras.Sequential:
    """Random distortions of the kind handwriting has.

    "affine": small rotations, shifts and zooms; "elastic": the same plus elastic distortions, the
    classic trick for MNIST (Simard et al., 2003); "wide": rotations up to 20 degrees and shifts up to
    a fifth of the image, without zoom (An et al., 2020, for their M5 network); "handwriting": "affine"
    plus the ways strangers differ from MNIST's writers, each for some of the digits: a narrower or
    wider hand (width zoomed apart from height), slant, thicker and thinner pens, uneven or broken
    strokes, elastic distortions and the blur of a low-resolution scan.
    """
    check_choice("augmentation", kind, AUGMENTATIONS[1:])  # "none" builds no layers
    degrees, shift, zoom = AFFINE_RANGES[kind]
    # Empty pixels outside the digit are black (0), as in MNIST.
    fill = dict(fill_mode="constant", fill_value=0.0)
    steps = [
        layers.RandomRotation(degrees / 360, seed=seed, **fill),
        layers.RandomTranslation(shift, shift, seed=seed + 1, **fill),
    ]
    if kind == "handwriting":
        # Each of a stranger's ways comes to some digits only, so that plain MNIST-like digits stay a
        # good part of what the model sees. MNIST's digits fill 20 pixels of height; a stranger's may
        # be narrow or wide for that height.
        extras = [
            layers.RandomZoom(zoom, width_factor=(-2 * zoom, 2 * zoom), seed=seed + 2, **fill),
            layers.RandomShear(x_factor=0.3, seed=seed + 4, **fill),
            StrokeWidth(seed=seed + 5),
            UnevenInk(seed=seed + 6),
            ElasticDistortion(seed=seed + 3),
            LowResolution(seed=seed + 7),
        ]
        steps += [Sometimes(extra, _HANDWRITING_RATE, seed=seed + 10 + n) for n, extra in enumerate(extras)]
    elif zoom:
        steps.append(layers.RandomZoom(zoom, seed=seed + 2, **fill))
    if kind == "elastic":
        steps.append(ElasticDistortion(seed=seed + 3))
    return keras.Sequential(steps, name=f"{kind}_augmentation")


#: The share of digits each of the "handwriting" recipe's distortions comes to.
_HANDWRITING_RATE = 0.4


class _RandomLayer(keras.layers.Layer):
    """A layer that draws random numbers from its own seeded stream (training only)."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


class Sometimes(_RandomLayer):
    """Applies ``layer`` to a random ``rate`` of the images of each batch, and leaves the others."""

    def __init__(self, layer, rate: float, seed: int | None = None, **kwargs):
        super().__init__(seed, **kwargs)
        self.layer, self.rate = layer, rate

    def call(self, images, training=True):
        if not training:
            return images
        chosen = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.seed_generator) < self.rate
        return ops.where(chosen, self.layer(images, training=True), images)


class LowResolution(_RandomLayer):
    """A low-resolution scan: the image reduced to 8-14 pixels a side (area average) and enlarged back.

    The sizes are drawn per image from a few fixed ones, so a batch needs one resize per size.
    """

    SIZES = (8, 10, 12, 14)

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        which = keras.random.randint((shape[0], 1, 1, 1), 0, len(self.SIZES), seed=self.seed_generator)
        out = images
        for n, size in enumerate(self.SIZES):
            small = ops.image.resize(images, (size, size), interpolation="area")
            blurred = ops.clip(
                ops.image.resize(small, (shape[1], shape[2]), interpolation="bicubic"), 0.0, 1.0
            )
            out = ops.where(which == n, blurred, out)
        return out


class StrokeWidth(_RandomLayer):
    """Thicker or thinner pens: each image is blended towards its 3x3 dilation or erosion.

    MNIST's strokes are 2-3 pixels wide at 28x28; a felt pen or a finger on a phone writes thicker, a
    fine pen or a mouse on a big canvas thinner. Thinning stops short of a full erosion, which would
    wipe out MNIST's thinnest strokes.
    """

    def call(self, images, training=True):
        if not training:
            return images
        amount = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), -1.0, 1.0, seed=self.seed_generator)
        thick = ops.max_pool(images, 3, 1, padding="same")
        thin = -ops.max_pool(-images, 3, 1, padding="same")
        return images + ops.relu(amount) * (thick - images) + 0.6 * ops.relu(-amount) * (thin - images)


class UnevenInk(_RandomLayer):
    """Uneven pen pressure and broken strokes: ink scaled by a smooth random field.

    Half the images have faded patches (ink down to 40%); the other half have gaps where the field
    falls below a cut, as a dry pen or a thin stroke lost in a scan leaves them.
    """

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        batch = shape[0]
        coarse = keras.random.uniform((batch, 7, 7, 1), seed=self.seed_generator)
        field = ops.image.resize(coarse, (shape[1], shape[2]), interpolation="bilinear")
        depth = keras.random.uniform((batch, 1, 1, 1), 0.0, 0.6, seed=self.seed_generator)
        faded = 1.0 - depth * field
        cut = keras.random.uniform((batch, 1, 1, 1), -0.3, 0.2, seed=self.seed_generator)
        broken = ops.clip((field - cut) / 0.1, 0.0, 1.0)
        choose = ops.cast(
            keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < 0.5, images.dtype
        )
        return images * (choose * faded + (1.0 - choose) * broken)


class ElasticDistortion(keras.layers.Layer):
    """Random elastic distortion (Simard et al., 2003): a smooth random displacement field per image.

    Keras' own RandomElasticTransform draws both displacement directions from one seed (so every pixel
    moves along the diagonal) and ties their size to their smoothness; this layer keeps the two apart
    and warps a whole batch at once. ``sigma`` is the smoothness in pixels, ``alpha`` scales the
    smoothed uniform noise into pixels. The paper's alpha 34 (strokes move about 1.4 px) made 2.2% of
    training digits unreadable to a 99.7% model, against 0.1% for alpha 12 (about 0.5 px), the default.
    """

    def __init__(self, alpha: float = 12.0, sigma: float = 4.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.seed = alpha, sigma, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        radius = int(3 * sigma)
        g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        g = (g / g.sum()).astype("float32")
        # A separable Gaussian blur of the two displacement channels, as two depthwise convolutions.
        self.blur_rows = np.tile(g.reshape(-1, 1, 1, 1), (1, 1, 2, 1))
        self.blur_cols = np.tile(g.reshape(1, -1, 1, 1), (1, 1, 2, 1))

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        noise = keras.random.uniform((batch, height, width, 2), -1.0, 1.0, seed=self.seed_generator)
        rows = ops.depthwise_conv(noise, self.blur_rows, padding="same")
        smooth = ops.depthwise_conv(rows, self.blur_cols, padding="same")
        displacement = self.alpha * smooth
        ys, xs = ops.meshgrid(
            ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"), indexing="ij"
        )
        y = ops.clip(ys[None] + displacement[..., 0], 0.0, ops.cast(height - 1, "float32"))
        x = ops.clip(xs[None] + displacement[..., 1], 0.0, ops.cast(width - 1, "float32"))
        return bilinear_sample(images, y, x)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "seed": self.seed}


def bilinear_sample(images, y, x):
    """Sample (B, H, W, C) images at fractional (B, H, W) row and column coordinates."""
    shape = ops.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    y0, x0 = ops.floor(y), ops.floor(x)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
    y1, x1 = ops.minimum(y0 + 1, height - 1), ops.minimum(x0 + 1, width - 1)
    flat = ops.reshape(images, (-1, shape[3]))
    base = (ops.arange(batch, dtype="int32") * height * width)[:, None, None]

    def at(row, col):
        return ops.take(flat, base + row * width + col, axis=0)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy
