"""Images for `pipe predict`: an image file or a folder of them, decoded as the run's
source decodes its images, or as their bytes for a run whose map ops decode them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from runner.data.sources.image_folder import image_problem
from runner.spec import Spec

IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_images(spec, path: Path, folder: dict | None, encoded: bool = False) -> tuple[np.ndarray, list[str]]:
    """An image file or every image under a folder (sorted by path), with their names.

    Decoded as the run's `image_folder` source decodes them (its `color_mode` channels,
    resized to its `image_size` as float32); for other sources as they are stored (uint8);
    `folder`: the run's `image_folder` options, if it read one; `encoded`: the files' bytes as
    they are, for a run whose map ops decode them. Returns the images and their names.
    """
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGES)
    if not files:
        raise Spec.for_input(path).error((), f"no images ({', '.join(IMAGES)}) in {path}")
    names = [files[0].name] if path.is_file() else [file.relative_to(path).as_posix() for file in files]
    for file in files:
        problem = image_problem(file)  # before TensorFlow allocates what its header declares
        if problem:
            raise Spec.for_input(file).error((), problem)
    if encoded:
        return np.array([file.read_bytes() for file in files], dtype=object), names
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[(folder or {}).get("color_mode", "rgb")] if folder else 0
    size = (folder or {}).get("image_size")
    images = []
    for file in files:
        try:
            image = tf.io.decode_image(file.read_bytes(), channels=channels, expand_animations=False)
        except tf.errors.OpError as e:
            raise Spec.for_input(file).error((), f"cannot decode image: {e.message}") from e
        images.append((tf.image.resize(image, size) if size is not None else image).numpy())
    shapes = {i.shape for i in images}
    if len(shapes) > 1:
        raise Spec.for_input(path).error((), f"images of different sizes {sorted(shapes)}: resize them first")
    stacked = np.stack(images)
    if folder is None and stacked.shape[-1] == 1 and _rank_without_channels(spec):
        stacked = stacked[..., 0]
    return stacked, names


def image_decoder(spec) -> str | None:
    """Where the run's map ops decode encoded images (`data.train.stages[0].map.ops[0]`), when a
    split's first op on the features does: it reads image files' bytes; else None."""
    for split in ("train", "test", "validation"):
        for i, stage in enumerate(spec.get("data", split, "stages", default=None) or []):
            ((name, args),) = stage.items()
            if name != "map":
                continue
            ops = [op for op in args["ops"] if (next(iter(op.values())) or {}).get("on", "features") == "features"]
            if ops and next(iter(ops[0])) == "decode_image":
                return f"data.{split}.stages[{i}].map.ops[{args['ops'].index(ops[0])}]"
            break  # the first map shapes what the source gives
    return None


def _rank_without_channels(spec) -> bool:
    """Whether the model reads images as (height, width): grey images lose their channel axis."""
    shape = spec.get("model", "sequential", "input_shape")
    return shape is not None and len(shape) == 2
