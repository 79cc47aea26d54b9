"""How well are real-world-looking images read? MNIST test digits rendered the way users send them.

Each digit is scaled up 3-8x, turned into black ink on white paper, rotated by up to 12 degrees,
placed off-centre on a larger sheet, and saved as a JPEG of quality 30-80; with ``--uneven-light`` the
sheet is also lit unevenly (a vignette, a shadow across one corner, or both). The images are posted to
``/api/predict`` of an in-process app (default) or of a running server (``--url``), and the script
prints the accuracy.

    PYTHONPATH=src DIGITS_DATA_DIR=/work/shared/data/mnist python benchmarks/user_images.py -n 2000
    python benchmarks/user_images.py -n 2000 --url http://127.0.0.1:8000
    python benchmarks/user_images.py -n 2000 --uneven-light
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digits.cli import add_data_dir_argument


def render_user_image(digit: np.ndarray, rng: np.random.Generator, uneven_light: bool = False) -> bytes:
    """A 28x28 uint8 MNIST digit as a JPEG a user might send: big, dark on light, askew, off-centre."""
    size = int(28 * rng.uniform(3, 8))
    image = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BILINEAR)
    image = image.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR, fillcolor=255, expand=True)
    width = int(image.width * rng.uniform(1.3, 2.5))
    height = int(image.height * rng.uniform(1.3, 2.5))
    sheet = Image.new("L", (width, height), int(rng.integers(215, 256)))  # paper is rarely pure white
    mask = Image.fromarray(np.asarray(image) < 250)
    corner = (int(rng.integers(0, width - image.width + 1)), int(rng.integers(0, height - image.height + 1)))
    sheet.paste(image, corner, mask)
    if uneven_light:
        sheet = Image.fromarray(np.clip(np.asarray(sheet) * light(sheet.size, rng), 0, 255).astype(np.uint8))
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=int(rng.integers(30, 81)))
    return out.getvalue()


def light(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """How much of the light reaches each pixel of a (width, height) sheet: a vignette that darkens the
    corners by 20-50%, a shadow that darkens one corner by up to 60% over a third to a half of the sheet,
    or both."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    u, v = x / width, y / height  # 0..1 across the sheet
    kind = rng.integers(3)  # 0 vignette, 1 shadow, 2 both
    factor = np.ones((height, width))
    if kind in (0, 2):
        factor *= 1 - rng.uniform(0.2, 0.5) * (((u - 0.5) ** 2 + (v - 0.5) ** 2) / 0.5)
    if kind in (1, 2):
        u, v = (u if rng.integers(2) else 1 - u), (v if rng.integers(2) else 1 - v)  # which corner
        start, reach = rng.uniform(0.5, 0.67), rng.uniform(0.3, 0.5)
        ramp = np.clip((u - start) / reach, 0, 1) * np.clip((v - start) / reach, 0, 1)
        factor *= 1 - rng.uniform(0.2, 0.6) * ramp
    return factor


def main(argv: list[str] | None = None) -> int:
    """Render the photos, post each to the app and print the accuracy; exit 2 on bad arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=2000, help="test digits to render (default 2000)")
    parser.add_argument("--url", help="a running server (default: an in-process app)")
    parser.add_argument("--model", help="model for the in-process app (default: the server's default)")
    add_data_dir_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-examples", metavar="DIR", help="also write the first 20 images here")
    parser.add_argument("--uneven-light", action="store_true", help="light each sheet unevenly")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")

    from digits import DigitsError, data

    try:
        (_, _), (x_test, y_test) = data.load_mnist(args.data_dir)
    except (OSError, DigitsError) as exc:
        parser.error(str(exc))
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(x_test), size=min(args.count, len(x_test)), replace=False)
    images = [render_user_image(x_test[i], rng, args.uneven_light) for i in pick]
    if args.save_examples:
        folder = Path(args.save_examples)
        folder.mkdir(parents=True, exist_ok=True)
        for k, (i, jpeg) in enumerate(zip(pick[:20], images, strict=False)):
            (folder / f"{k:02d}-label{y_test[i]}.jpg").write_bytes(jpeg)

    if args.url:
        import httpx

        client = httpx.Client(base_url=args.url, timeout=30)
    else:
        import warnings

        # Starlette suggests a successor to httpx for its test client; httpx is what this project has.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

        from digits.server import create_app

        try:
            client = TestClient(create_app(args.model))
        except (OSError, DigitsError) as exc:
            parser.error(str(exc))

    correct = low = failed = 0
    wrong: dict[tuple[int, int], int] = {}
    start = time.perf_counter()
    with client:
        for i, jpeg in zip(pick, images, strict=True):
            response = client.post("/api/predict", files={"file": ("digit.jpg", jpeg, "image/jpeg")})
            if response.status_code != 200:
                failed += 1
                continue
            result = response.json()
            low += result["low_confidence"]
            if result["digit"] == y_test[i]:
                correct += 1
            else:
                key = (int(y_test[i]), result["digit"])
                wrong[key] = wrong.get(key, 0) + 1
    elapsed = time.perf_counter() - start
    n = len(images)
    print(
        f"{n} user-like images: accuracy {correct / n:.2%} ({correct}/{n}), {failed} not read, "
        f"{low} flagged low-confidence, {elapsed / n * 1e3:.1f} ms per request"
    )
    if wrong:
        common = sorted(wrong.items(), key=lambda kv: -kv[1])[:8]
        print(
            "most common mistakes (true -> read: count): "
            + ", ".join(f"{t}->{p}: {c}" for (t, p), c in common)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
