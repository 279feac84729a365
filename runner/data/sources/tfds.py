"""The tfds source: `tfds.load` with offline preparation and one-line errors.

Offline, tfds's downloader retries each file for minutes before failing; this module tells
"not prepared and not downloadable" apart at once and says what to do instead.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import tensorflow as tf

from runner.spec.errors import did_you_mean, first_line
from runner.data.source import Source, dataset_source, keep_indices


def load(spec, path: tuple, options: dict, seed=None) -> Source:
    """The Source of a `tfds:` declaration: tfds.load, with its metadata and files."""
    import tensorflow_datasets as tfds  # a second or two; only specs that use tfds pay it

    name, split = options["name"], options["split"]
    data_dir = spec.resolve_path(options["data_dir"]) if options.get("data_dir") else None
    manual_dir = spec.resolve_path(options["manual_dir"]) if options.get("manual_dir") else None
    kwargs = dict(data_dir=None if data_dir is None else str(data_dir),
                  as_supervised=options.get("as_supervised", True),
                  shuffle_files=options.get("shuffle_files", False), with_info=True)

    def load(which):
        try:
            return _load_tfds(spec, path, options, tfds, which, kwargs, manual_dir)
        except tfds.core.registered.DatasetNotFoundError as e:
            hint = did_you_mean(name, tfds.list_builders())
            raise spec.error(path + ("name",), f"unknown tfds dataset '{name}'", hint, at_value=True) from e
        except (ValueError, KeyError) as e:
            raise spec.error(path + ("split",), f"tfds cannot read split '{which}' of '{name}': "
                                                f"{first_line(e)}", at_value=True) from e

    dataset, info = load(split)
    label_feature = _label_feature(info, options.get("as_supervised", True))
    num_classes = getattr(label_feature, "num_classes", None)
    class_names = list(label_feature.names) if getattr(label_feature, "names", None) else None
    files = _tfds_files(info, split)
    count = _tfds_count(info, split, dataset)

    def source_of(which, dataset, count):
        def select(start, stop):
            if re.fullmatch(r"\w+", which):
                # slicing by tfds keeps shuffle_files correct for both parts
                part = f"{which}[{start}:{stop}]"
                return source_of(part, load(part)[0], stop - start)
            if kwargs["shuffle_files"]:
                raise spec.error(path + ("split",), f"a validation fraction of the sliced split '{which}' "
                                                    "needs shuffle_files: false (or a plain split name)")
            base = dataset
            return dataset_source(lambda: base.skip(start).take(stop - start), stop - start,
                                   num_classes, class_names, files)

        def subset(indices):
            return dataset_source(lambda: keep_indices(dataset, indices), len(indices), num_classes,
                                  class_names, files)

        # Shuffled files give another order on every pass: elements cannot be picked by index.
        return Source(lambda: dataset, count, select, num_classes, class_names, files,
                      subset=None if kwargs["shuffle_files"] else subset)

    return source_of(split, dataset, count)


def _load_tfds(spec, path, options, tfds, split, kwargs, manual_dir):
    """tfds.load, but a dataset that is not prepared and cannot be fetched is one located line.

    Offline, tfds's downloader retries each file for minutes before failing; loading with
    download=False first tells "not prepared" apart at once, and a reachability check of
    the download hosts replaces the retries.
    """
    from tensorflow_datasets.core.download import download_manager

    name = options["name"]
    try:
        return tfds.load(name, split=split, download=False, **kwargs)
    except AssertionError:
        pass  # tfds's way of saying "not prepared in data_dir"
    builder = tfds.builder(name, data_dir=kwargs["data_dir"])
    if not options.get("download", True):
        raise spec.error(path, f"dataset '{name}' is not prepared in {builder.data_dir} and download is false",
                         "set data_dir to a directory holding a prepared copy, or set download: true")
    _check_fetchable(spec, path, builder, name, manual_dir)
    config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else str(manual_dir))
    try:
        return tfds.load(name, split=split, download=True,
                         download_and_prepare_kwargs={"download_config": config}, **kwargs)
    except download_manager.NonMatchingChecksumError as e:
        where, which = (path + ("manual_dir",), f"files in {manual_dir}") if manual_dir else (path, "downloaded files")
        raise spec.error(where, f"{which} differ from the ones tfds registers for '{name}' (checksum mismatch)",
                         "use the files from the dataset's registered URLs, or read yours with another "
                         "source such as idx") from e
    except (AssertionError, OSError) as e:
        raise spec.error(path, f"cannot prepare tfds dataset '{name}': {first_line(e)}") from e


def _check_fetchable(spec, path, builder, name, manual_dir):
    """Raise at once when preparing would need a network this machine does not reach."""
    url_infos = builder.url_infos or {}
    needed = sorted({info.filename for info in url_infos.values() if info.filename})
    missing = [f for f in needed if manual_dir is None or not (manual_dir / f).is_file()]
    if needed and not missing:
        return  # tfds prepares from the files in manual_dir
    instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if instructions and (manual_dir is None or not manual_dir.is_dir() or not any(manual_dir.iterdir())):
        first = " ".join(instructions.split())[:300]
        raise spec.error(path, f"dataset '{name}' must be downloaded by hand into manual_dir", first)
    hosts = sorted({urlparse(u).hostname for u in url_infos if urlparse(u).hostname})
    unreachable = [h for h in hosts if not _reachable(h)]
    if not unreachable:
        return
    where = f"manual_dir {manual_dir} lacks {', '.join(missing)}" if manual_dir else \
        f"put {', '.join(missing)} in a directory and set manual_dir to it"
    raise spec.error(
        path, f"dataset '{name}' is not prepared in {builder.data_dir} and cannot be downloaded "
              f"({', '.join(unreachable)} unreachable)",
        f"{where}, or set data_dir to a directory holding a prepared copy")


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _label_feature(info, as_supervised):
    keys = info.supervised_keys
    key = keys[1] if as_supervised and keys and isinstance(keys[1], str) else "label"
    try:
        return info.features[key]
    except (KeyError, TypeError):
        return None


def _tfds_count(info, split, dataset) -> int:
    try:
        return int(info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError):
        count = int(dataset.cardinality())  # splits unknown (e.g. mocked data): ask tf.data
        return count if count >= 0 else int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def _tfds_files(info, split) -> list[Path]:
    """The prepared files of the split's base name (fingerprinted in the run manifest)."""
    folder = Path(info.data_dir)
    base = re.match(r"\w+", split).group(0) if re.match(r"\w+", split) else split
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and f"-{base}." in p.name)
