"""The `window` stage: a series of time steps as windows, as keras.utils.timeseries_dataset_from_array.

Each element of the split is one time step (features, or features and a label), in time
order. A window is `length` steps taken every `sampling_rate` steps; windows start every
`stride` steps. Its target is a value `horizon` steps after the window's last step: the next
step's features (`targets: next`), the step's label column (`targets: label`, e.g. a CSV
`label` column; horizon 0 is the label of the window's last step), or none. Windows are made
within a split, so a series split in time order (`fraction` with `shuffle: false`) never has
a window across a split's boundary.
"""

from __future__ import annotations

import tensorflow as tf


def window_stage(spec, where, dataset, args, count, info, split=None, too_short=None):
    """`dataset` of time steps -> a dataset of (window, target) (or windows only).

    Args:
        split: the split being cut ("test"), named when it is shorter than one window.
        too_short: (span, steps) -> the error to raise when the series is shorter than one
            window (`pipe predict` locates it at its input file); None: located at the stage.
    """
    length, stride = args["length"], args.get("stride", 1)
    rate, horizon = args.get("sampling_rate", 1), args.get("horizon", 1)
    element = dataset.element_spec
    labelled = isinstance(element, tuple) and len(element) == 2
    targets = args.get("targets", "label" if labelled else "next")
    if targets == "label" and not labelled:
        raise spec.error(where + ("targets",), "targets: label takes each step's label, but the elements "
                                               "have no label (use targets: next, or give the source a label "
                                               "column)", at_value=True)
    if targets == "next" and horizon < 1:
        raise spec.error(where + ("horizon",), "targets: next needs a horizon of at least 1 step", at_value=True)
    features = element[0] if labelled else element
    for part in tf.nest.flatten(features):
        if part.shape.rank is not None and part.shape.rank > 0 and part.shape[0] is None:
            raise spec.error(where, "window takes one time step per element, but the elements are batched "
                                    "(put window before batch)")
    last = (length - 1) * rate
    span = last + 1 + (horizon if targets != "none" else 0)

    def cut(*steps):
        steps = steps[0] if len(steps) == 1 else steps
        x = steps[0] if labelled else steps
        window = tf.nest.map_structure(lambda t: t[0:last + 1:rate], x)
        if targets == "none":
            return window
        source = steps[1] if targets == "label" else x
        return window, tf.nest.map_structure(lambda t: t[last + horizon], source)

    def batch_window(*parts):
        parts = parts[0] if len(parts) == 1 else parts
        return tf.data.Dataset.zip(tf.nest.map_structure(lambda d: d.batch(span, drop_remainder=True), parts))

    windows = dataset.window(span, shift=stride, drop_remainder=True).flat_map(batch_window).map(cut)
    steps = int(dataset.cardinality())
    if 0 <= steps < span:
        if too_short is not None:
            raise too_short(span, steps)
        named = f"data.{split}" if split else "a split here"
        raise spec.error(where, f"a window spans {span} time steps (length {length}, sampling_rate {rate}"
                                f"{'' if targets == 'none' else f', horizon {horizon}'}), but {named} has "
                                f"only {steps} steps: shorten the window or hold out a larger fraction")
    if steps >= 0:  # known: say how many windows (sizes such as batch_size: all, epoch lengths)
        windows = windows.apply(tf.data.experimental.assert_cardinality((steps - span) // stride + 1))
    return windows

