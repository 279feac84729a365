"""The data layer: sources, stages and map ops build the tf.data pipelines a spec declares."""

from __future__ import annotations

import gzip
import struct
import textwrap

import numpy as np
import pytest

from tests.conftest import FASHION_MNIST, SHARED_DATA, SPECS
from runner.spec.errors import SpecError
from runner.spec.metadata import substitute_metadata
from runner.spec import load_spec

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.data import build_datasets, synthetic_truth  # noqa: E402
from runner.data.ops import parse_slice  # noqa: E402

TAIL = """
model: {sequential: {layers: [Flatten]}}
train: {epochs: 1, loss: mse, optimizer: adam}
"""


def load(write_spec, data: str, seed: int | None = 7):
    """A spec whose data section is `data` (YAML indented under `data:`)."""
    head = "version: 1\nname: t\n" + (f"seed: {seed}\n" if seed is not None else "")
    return load_spec(write_spec(head + "data:\n" + textwrap.indent(textwrap.dedent(data), "  ") + TAIL))


def build(write_spec, data: str, seed: int | None = 7):
    spec = load(write_spec, data, seed)
    keras.utils.set_random_seed(seed or 0)
    return build_datasets(spec)


def error_of(write_spec, data: str) -> str:
    spec = load(write_spec, data)
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    return str(caught.value).split(": ", 1)[1]  # without the file:line:col prefix


def arrays(dataset):
    """Every element of a dataset as numpy: a list of tuples (or of arrays)."""
    return list(dataset.as_numpy_iterator())


def write_idx(path, array: np.ndarray, compress: bool):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(header + body) if compress else header + body)
    return path


def stage_ops(dataset):
    """The chain of tf.data ops behind `dataset`, source first, with their constant inputs."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())
    nodes = {n.name: n for n in graph.node}
    node = nodes[next(n.name for n in graph.node if n.op == "_Retval")]
    chain = []
    while node.input and "Dataset" in nodes[node.input[0]].op:
        node = nodes[node.input[0]]
        consts = [tf.make_ndarray(nodes[i].attr["value"].tensor) for i in node.input[1:]
                  if nodes[i].op == "Const" and nodes[i].attr["dtype"].type == tf.int64.as_datatype_enum]
        chain.append((node.op, consts))
    return chain[::-1]


IMAGES = np.arange(5 * 3 * 2, dtype=np.uint8).reshape(5, 3, 2)
LABELS = np.array([3, 1, 4, 1, 5], dtype=np.uint8)


# ---------------------------------------------------------------------------- sources


@pytest.mark.parametrize("compress", [True, False])
def test_idx_source_reads_gzip_and_raw_files(write_spec, tmp_path, compress):
    write_idx(tmp_path / "images.idx", IMAGES, compress)
    write_idx(tmp_path / "labels.idx", LABELS, compress)
    data = build(write_spec, """
        train:
          source: {idx: {images: images.idx, labels: labels.idx}}
    """)
    elements = arrays(data.train)
    np.testing.assert_array_equal(np.stack([x for x, _ in elements]), IMAGES)
    np.testing.assert_array_equal([y for _, y in elements], LABELS)
    assert data.train.element_spec[0].dtype == tf.uint8
    assert data.info == {"num_classes": 6, "class_names": None,
                         "num_examples": {"train": 5, "validation": None, "test": None}}
    assert data.files == [tmp_path / "images.idx", tmp_path / "labels.idx"]


def test_idx_source_without_labels_yields_features_only(write_spec, tmp_path):
    write_idx(tmp_path / "images.idx", IMAGES, True)
    data = build(write_spec, "train: {source: {idx: {images: images.idx}}}")
    assert isinstance(data.train.element_spec, tf.TensorSpec)
    assert data.info["num_classes"] is None


def test_missing_file_is_located_at_its_key(write_spec, tmp_path):
    spec = load(write_spec, """
        train:
          source:
            idx: {images: nowhere/images.gz}
    """)
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    assert str(caught.value) == (f"{spec.file}:8:13: data.train.source.idx.images: "
                                 f"file not found: {tmp_path / 'nowhere/images.gz'}")


@pytest.mark.parametrize("target, said", [("folder", "a folder, not a file"), ("/dev/zero", "not a regular file")])
def test_a_data_path_that_is_no_regular_file_says_what_it_is(write_spec, tmp_path, target, said):
    (tmp_path / "folder").mkdir()
    assert error_of(write_spec, f"train: {{source: {{idx: {{images: {target}}}}}}}") == (
        f"data.train.source.idx.images: {said}: {tmp_path / target}")


def test_idx_bad_magic_and_truncated_files_are_reported(write_spec, tmp_path):
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"hello, world"))
    assert error_of(write_spec, "train: {source: {idx: {images: text.gz}}}") == (
        f"data.train.source.idx.images: not an IDX file (magic number 68656c6c): {tmp_path / 'text.gz'}")
    good = write_idx(tmp_path / "images.idx", IMAGES, False)
    (tmp_path / "cut.idx").write_bytes(good.read_bytes()[:-3])
    assert error_of(write_spec, "train: {source: {idx: {images: cut.idx}}}") == (
        "data.train.source.idx.images: corrupt IDX file: shape [5, 3, 2] needs 30 bytes of data, "
        f"found 27: {tmp_path / 'cut.idx'}")
    (tmp_path / "broken.gz").write_bytes(gzip.compress(good.read_bytes())[:-10])
    message = error_of(write_spec, "train: {source: {idx: {images: broken.gz}}}")
    assert message.startswith(f"data.train.source.idx.images: corrupt gzip file: {tmp_path / 'broken.gz'} (")


def test_idx_labels_must_match_images(write_spec, tmp_path):
    write_idx(tmp_path / "images.idx", IMAGES, False)
    write_idx(tmp_path / "labels.idx", LABELS[:4], False)
    assert error_of(write_spec, "train: {source: {idx: {images: images.idx, labels: labels.idx}}}") == (
        "data.train.source.idx.labels: 4 labels for 5 images")


def test_csv_source_without_header_label_last(write_spec, tmp_path):
    rows = ["1,2,3,4,0", "5,6,7,8,2", "9,10,11,12,1"]
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress("\n".join(rows).encode()))
    data = build(write_spec, """
        train: {source: {csv: {path: d.csv.gz, label: -1, shape: [2, 2], dtype: uint8}}}
    """)
    elements = arrays(data.train)
    assert data.train.element_spec[0] == tf.TensorSpec([2, 2], tf.uint8)
    assert data.train.element_spec[1].dtype == tf.int64
    np.testing.assert_array_equal(elements[1][0], [[5, 6], [7, 8]])
    assert [int(y) for _, y in elements] == [0, 2, 1]
    assert data.info["num_classes"] == 3


def test_csv_source_with_header_label_by_name(write_spec, tmp_path):
    (tmp_path / "d.csv").write_text("a;target;b\n0.5;1;2\n1.5;0;3\n")
    data = build(write_spec, """
        train: {source: {csv: {path: d.csv, header: true, label: target, delimiter: ";"}}}
    """)
    elements = arrays(data.train)
    assert data.train.element_spec[0] == tf.TensorSpec([2], tf.float32)
    np.testing.assert_array_equal(elements[0][0], [0.5, 2.0])
    assert [int(y) for _, y in elements] == [1, 0]


def test_csv_mistakes_are_located(write_spec, tmp_path):
    (tmp_path / "d.csv").write_text("a,target\n1,2\n")
    assert error_of(write_spec, "train: {source: {csv: {path: d.csv, header: true, label: label}}}") == (
        "data.train.source.csv.label: no column 'label' in the header (columns: a, target)")
    assert error_of(write_spec, "train: {source: {csv: {path: d.csv, header: true, shape: [2]}}}") == (
        "data.train.source.csv.shape: cannot reshape 1 feature columns into [2]")
    (tmp_path / "e.csv").write_text("1,300,0\n")
    assert error_of(write_spec, "train: {source: {csv: {path: e.csv, dtype: uint8}}}") == (
        f"data.train.source.csv.dtype: the values in {tmp_path / 'e.csv'} do not fit dtype uint8")


def test_npz_source(write_spec, tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(6))
    data = build(write_spec, "train: {source: {npz: {path: d.npz, features: x, label: y}}}")
    np.testing.assert_array_equal(np.stack([e[0] for e in arrays(data.train)]), x)
    assert data.info["num_classes"] == 6
    assert error_of(write_spec, "train: {source: {npz: {path: d.npz, features: images}}}") == (
        f"data.train.source.npz.features: no array 'images' in {tmp_path / 'd.npz'} (arrays: x, y)")


def test_npy_source(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 2), np.float64))
    np.save(tmp_path / "y.npy", np.array([0.5, 1.5, 2.5, 3.5]))
    data = build(write_spec, "train: {source: {npy: {features: x.npy, label: y.npy}}}")
    assert data.train.element_spec == (tf.TensorSpec([2], tf.float64), tf.TensorSpec([], tf.float64))
    assert data.info["num_classes"] is None  # float labels: a regression, no classes
    np.save(tmp_path / "y3.npy", np.zeros(3))
    assert error_of(write_spec, "train: {source: {npy: {features: x.npy, label: y3.npy}}}") == (
        "data.train.source.npy.label: 3 labels for 4 feature rows")


def write_tfrecord(path, rows, compression=None):
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for image, label in rows:
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(float_list=tf.train.FloatList(value=image.ravel())),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[label * 10])),
            }))
            writer.write(example.SerializeToString())


def test_tfrecord_source_globs_compression_and_features(write_spec, tmp_path):
    images = np.arange(4 * 6, dtype=np.float32).reshape(4, 2, 3)
    (tmp_path / "records").mkdir()
    write_tfrecord(tmp_path / "records/a.tfrecord", [(images[0], 0), (images[1], 1)], "GZIP")
    write_tfrecord(tmp_path / "records/b.tfrecord", [(images[2], 2), (images[3], 7)], "GZIP")
    data = build(write_spec, """
        train:
          source:
            tfrecord:
              files: ["records/*.tfrecord"]
              compression: GZIP
              features: {image: {dtype: float32, shape: [2, 3]}, label: {dtype: int32, shape: []}}
              label: label
    """)
    elements = arrays(data.train)
    assert data.train.element_spec == (tf.TensorSpec([2, 3], tf.float32), tf.TensorSpec([], tf.int32))
    np.testing.assert_array_equal(np.stack([x for x, _ in elements]), images)
    assert [int(y) for _, y in elements] == [0, 1, 2, 7]
    assert data.info["num_classes"] == 8 and data.info["num_examples"]["train"] == 4
    assert data.files == [tmp_path / "records/a.tfrecord", tmp_path / "records/b.tfrecord"]

    several = build(write_spec, """
        train:
          source:
            tfrecord:
              files: [records/a.tfrecord]
              compression: GZIP
              features: {image: {dtype: float32, shape: [2, 3]}, id: {dtype: int64}, label: {dtype: int64}}
              label: label
    """)
    features, label = arrays(several.train)[1]
    assert set(features) == {"image", "id"} and features["id"] == 10 and label == 1


def test_tfrecord_corrupt_and_mismatched_files_are_reported(write_spec, tmp_path):
    write_tfrecord(tmp_path / "a.tfrecord", [(np.zeros(6, np.float32), 0)])
    (tmp_path / "bad.tfrecord").write_bytes(b"\x00" * 40)
    message = error_of(write_spec, """
        train: {source: {tfrecord: {files: [bad.tfrecord], features: {label: {dtype: int64}}}}}
    """)
    assert message.startswith(f"data.train.source.tfrecord.files: corrupt TFRecord file {tmp_path / 'bad.tfrecord'}: ")
    message = error_of(write_spec, """
        train: {source: {tfrecord: {files: [a.tfrecord], features: {pixels: {dtype: float32, shape: [6]}}}}}
    """)
    assert message.startswith("data.train.source.tfrecord.features: the records do not match the declared features: ")
    assert error_of(write_spec, "train: {source: {tfrecord: {files: ['*.rec'], features: {a: {dtype: int64}}}}}") == (
        f"data.train.source.tfrecord.files[0]: no file matches: {tmp_path / '*.rec'}")


SYNTHETIC = """
    train:
      source:
        synthetic:
          x: {linspace: {start: -2.0, stop: 2.0, num: 201}}
          y: {linear: {w: 3.0, b: 2.0}}
          noise: {stddev: %s}
"""


def test_synthetic_source_is_the_seed_regression_data(write_spec):
    data = build(write_spec, SYNTHETIC % 1.0)
    x, y = (np.concatenate(part) for part in zip(*arrays(data.train.batch(500))))
    assert data.train.element_spec == (tf.TensorSpec([1], tf.float32), tf.TensorSpec([1], tf.float32))
    np.testing.assert_allclose(x[:, 0], np.linspace(-2, 2, 201), rtol=1e-6)
    noise = y - synthetic_truth({"synthetic": load(write_spec, SYNTHETIC % 1.0).doc["data"]["train"]["source"]["synthetic"]}, x)
    assert 0.8 < noise.std() < 1.2 and abs(noise.mean()) < 0.25
    again = build(write_spec, SYNTHETIC % 1.0)
    np.testing.assert_array_equal(np.concatenate([b for _, b in arrays(again.train.batch(500))]), y)
    other_seed = build(write_spec, SYNTHETIC % 1.0, seed=8)
    assert not np.array_equal(np.concatenate([b for _, b in arrays(other_seed.train.batch(500))]), y)
    clean = build(write_spec, SYNTHETIC % 0.0)
    np.testing.assert_allclose(np.concatenate([b for _, b in arrays(clean.train.batch(500))])[:, 0],
                               3 * np.linspace(-2, 2, 201) + 2, rtol=1e-5, atol=1e-6)


def test_synthetic_truth_of_a_polynomial():
    config = {"x": {"uniform": {"low": 0, "high": 1, "num": 3}}, "y": {"polynomial": {"coefficients": [1, 0, 2]}}}
    np.testing.assert_allclose(synthetic_truth(config, np.array([[0.0], [1.0], [2.0]])), [[1], [3], [9]])
    assert synthetic_truth({"csv": {"path": "x"}}, np.zeros(2)) is None


def test_validation_fraction_without_shuffle_is_the_last_elements_of_train(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.arange(10))
    data = build(write_spec, """
        train: {source: {npy: {features: x.npy}}, stages: [{batch: {batch_size: 100}}]}
        validation: {fraction: 0.2, shuffle: false}
    """)
    assert [list(b) for b in arrays(data.train)] == [list(range(8))]
    assert [list(b) for b in arrays(data.validation)] == [[8, 9]]  # train's batch stage, inherited
    assert data.info["num_examples"] == {"train": 8, "validation": 2, "test": None}
    assert error_of(write_spec, """
        train: {source: {npy: {features: x.npy}}}
        validation: {fraction: 0.01}
    """) == "data.validation.fraction: a fraction 0.01 of train's 10 elements leaves no validation elements"


# ---------------------------------------------------------------------------- stages


def test_stages_keep_the_declared_order_and_use_autotune(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((20, 2), np.uint8))
    np.save(tmp_path / "y.npy", np.arange(20) % 4)
    data = build(write_spec, """
        train:
          source: {npy: {features: x.npy, label: y.npy}}
          stages:
            - map: {ops: [{cast: {dtype: float32}}]}
            - cache: {}
            - shuffle: {buffer_size: all, reshuffle_each_iteration: false}  # tf.data's own op
            - batch: {batch_size: 8}
            - prefetch: {}
        test:
          source: {npy: {features: x.npy, label: y.npy}}
          stages:
            - batch: {batch_size: all}
            - map: {ops: [{scale: {factor: 2.0}}], num_parallel_calls: 3}
            - prefetch: {buffer_size: 2}
            - cache: null
    """)
    chain = stage_ops(data.train)
    assert [op for op, _ in chain] == ["TensorSliceDataset", "ParallelMapDatasetV2", "CacheDatasetV2",
                                      "ShuffleDatasetV3", "BatchDatasetV2", "PrefetchDataset"]
    assert chain[1][1][0] == tf.data.AUTOTUNE  # num_parallel_calls
    assert chain[3][1][0] == 20  # shuffle buffer: all = the split's elements
    assert chain[5][1][0] == tf.data.AUTOTUNE  # prefetch buffer
    test_chain = stage_ops(data.test)
    assert [op for op, _ in test_chain] == ["TensorSliceDataset", "BatchDatasetV2", "ParallelMapDatasetV2",
                                           "PrefetchDataset", "CacheDatasetV2"]
    assert test_chain[1][1][0] == 20 and test_chain[2][1][0] == 3 and test_chain[3][1][0] == 2


def test_filter_take_skip_shard_repeat_unbatch(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.arange(12))
    np.save(tmp_path / "y.npy", np.arange(12) % 3)
    labels = lambda d: [int(y) for _, y in arrays(d)]  # noqa: E731
    data = build(write_spec, """
        train:
          source: {npy: {features: x.npy, label: y.npy}}
          stages: [{filter: {label_in: [0, 2]}}, {skip: {count: 1}}, {take: {count: 5}}]
        validation:
          source: {npy: {features: x.npy, label: y.npy}}
          stages: [{filter: {label_not_in: [0]}}, {shard: {num_shards: 2, index: 1}}, {repeat: {count: 2}}]
        test:
          source: {npy: {features: x.npy, label: y.npy}}
          stages: [{batch: {batch_size: 5}}, {unbatch: null}, {shuffle: {buffer_size: all, seed: 3}}]
    """)
    assert [int(x) for x, _ in arrays(data.train)] == [2, 3, 5, 6, 8]
    assert labels(data.validation) == [2, 2, 2, 2] * 2
    assert sorted(int(x) for x, _ in arrays(data.test)) == list(range(12))


def test_cache_to_a_file_next_to_the_spec(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.arange(4))
    data = build(write_spec, "train: {source: {npy: {features: x.npy}}, stages: [{cache: {filename: cache/x}}]}")
    assert list(arrays(data.train)) == [0, 1, 2, 3]
    assert any(p.name.startswith("x") for p in (tmp_path / "cache").iterdir())


def test_stage_mistakes_are_located(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.arange(4))
    assert error_of(write_spec, "train: {source: {npy: {features: x.npy}}, stages: [{filter: {label_in: [1]}}]}") == (
        "data.train.stages[0].filter: filter keeps elements by label, but the elements have no label")
    assert error_of(write_spec, "train: {source: {npy: {features: x.npy}}, stages: [{shard: {num_shards: 2, index: 2}}]}") == (
        "data.train.stages[0].shard.index: index 2 must be below num_shards 2")
    assert error_of(write_spec, "train: {source: {npy: {features: x.npy}}, stages: [{batch: {batch_size: 2}}, "
                                "{unbatch: null}, {unbatch: null}]}").startswith(
        "data.train.stages[2].unbatch: unbatch failed: ")
    assert error_of(write_spec, """
        train:
          source: {npy: {features: x.npy}}
          stages: [{map: {ops: [{one_hot: {depth: "${data.num_classes}"}}]}}]
    """) == ("data.train.stages[0].map.ops[0].one_hot.depth: '${data.num_classes}': the data has no number of "
             "classes (integer labels and a declared split are needed)")


# ---------------------------------------------------------------------------- map ops


def test_map_ops_compute_what_they_say(write_spec, tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([1, 2]))

    def first(ops: str, on_label=False):
        data = build(write_spec, f"""
            train:
              source: {{npy: {{features: x.npy, label: y.npy}}}}
              stages: [{{map: {{ops: {ops}}}}}]
        """)
        features, label = arrays(data.train)[0]
        return label if on_label else features

    image = x[0]
    np.testing.assert_array_equal(first("[{scale: {divisor: 255.0}}]"), tf.cast(image, tf.float32) / 255.)
    np.testing.assert_allclose(first("[{cast: {dtype: float32}}, {scale: {factor: 0.5}}]"), image * 0.5)
    np.testing.assert_allclose(first("[{normalize: {mean: 1.0, std: 2.0}}]"), (image - 1.0) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(first("[{normalize: {mean: [0, 1, 2, 3], std: [1, 1, 1, 2]}}]"),
                               (image - [0, 1, 2, 3]) / [1, 1, 1, 2], rtol=1e-6)
    np.testing.assert_array_equal(first("[{reshape: {shape: [4, 3]}}]"), image.reshape(4, 3))
    np.testing.assert_array_equal(first("[{flatten: {}}]"), image.ravel())
    np.testing.assert_array_equal(first("[{transpose: {perm: [1, 0]}}]"), image.T)
    np.testing.assert_array_equal(first("[{slice: {spec: '1:3, ::2'}}]"), image[1:3, ::2])
    np.testing.assert_array_equal(first("[{slice: {spec: '..., -1'}}]"), image[..., -1])
    assert first("[{resize: {size: [6, 8], method: nearest}}]").shape == (6, 8, 1)
    np.testing.assert_allclose(first("[{cast: {dtype: float32}}, {einsum: {equation: 'is,s->i', operand: [1, 0, 0, 2]}}]"),
                               image[:, 0] + 2.0 * image[:, 3])
    np.testing.assert_array_equal(first("[{one_hot: {depth: '${data.num_classes}', on: label}}]", True), [0, 1, 0])


def test_map_ops_fuse_into_one_map_call(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2, 2), np.uint8))
    data = build(write_spec, """
        train:
          source: {npy: {features: x.npy}}
          stages: [{map: {ops: [{cast: {dtype: float32}}, {scale: {divisor: 2.0}}, {flatten: null}]}}]
    """)
    assert [op for op, _ in stage_ops(data.train)] == ["TensorSliceDataset", "ParallelMapDatasetV2"]


def test_parse_slice():
    assert parse_slice("1:3, 0:2") == (slice(1, 3), slice(0, 2))
    assert parse_slice(" ::2 ,5, ...") == (slice(None, None, 2), 5, Ellipsis)
    for bad in ["1:x", "__import__('os')", "1:2:3:4", "1,,2", "[1]"]:
        with pytest.raises(ValueError, match="cannot parse slice"):
            parse_slice(bad)


def test_map_op_mistakes_are_located(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    stages = "train: {source: {npy: {features: x.npy}}, stages: [{map: {ops: [%s]}}]}"
    assert error_of(write_spec, stages % "{slice: {spec: 'os.system(1)'}}") == (
        "data.train.stages[0].map.ops[0].slice.spec: cannot parse slice 'os.system(1)': 'os.system(1)' is not an "
        "index, a start:stop:step slice or '...'")
    assert error_of(write_spec, stages % "{cast: {dtype: int32, on: label}}") == (
        "data.train.stages[0].map.ops[0].cast: cast is on the label, but the elements have no label")
    assert error_of(write_spec, stages % "{flatten: null}, {reshape: {shape: [3]}}").startswith(
        "data.train.stages[0].map.ops[1].reshape: reshape cannot apply to features of shape [4] and dtype float32: "
        "Cannot reshape a tensor with 4 elements to shape [3]")
    assert error_of(write_spec, stages % "{scale: {on: features}}") == (
        "data.train.stages[0].map.ops[0].scale: give either factor or divisor")


def test_substitute_metadata():
    info = {"num_classes": 10, "num_examples": {"train": 54000, "validation": 6000, "test": None}}
    tree = {"layers": [{"Dense": {"units": "${data.num_classes}"}}, "${data.train.num_examples}", "x${data.num_classes}"]}
    assert substitute_metadata(tree, info) == {"layers": [{"Dense": {"units": 10}}, 54000, "x${data.num_classes}"]}
    assert tree["layers"][0]["Dense"]["units"] == "${data.num_classes}"  # a copy, the spec is untouched
    with pytest.raises(ValueError, match=r"unknown reference '\$\{data.classes\}'"):
        substitute_metadata(["${data.classes}"], info)
    with pytest.raises(ValueError, match="has no size of a data.test split"):
        substitute_metadata("${data.test.num_examples}", info)


# ---------------------------------------------------------------------------- real data

needs_shared = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"no real MNIST files in {SHARED_DATA}")
needs_fashion = pytest.mark.skipif(not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@needs_shared
def test_real_mnist_idx_and_csv(write_spec):
    mnist = SHARED_DATA / "mnist"
    data = build(write_spec, f"""
        train: {{source: {{csv: {{path: {mnist / 'mnist_5k.csv.gz'}, label: -1, shape: [28, 28], dtype: uint8}}}}}}
        test: {{source: {{idx: {{images: {mnist / 't10k-images-idx3-ubyte.gz'}, labels: {mnist / 't10k-labels-idx1-ubyte.gz'}}}}}}}
    """)
    assert data.train.element_spec == (tf.TensorSpec([28, 28], tf.uint8), tf.TensorSpec([], tf.int64))
    assert data.test.element_spec == (tf.TensorSpec([28, 28], tf.uint8), tf.TensorSpec([], tf.uint8))
    assert data.info["num_examples"] == {"train": 5000, "validation": None, "test": 10000}
    assert data.info["num_classes"] == 10
    train_labels = np.array([int(y) for _, y in arrays(data.train)])
    np.testing.assert_array_equal(np.bincount(train_labels), [500] * 10)
    first_test = next(iter(data.test))
    assert int(first_test[1]) == 7 and int(tf.reduce_max(first_test[0])) == 255  # MNIST's first test digit


@needs_fashion
def test_real_fashion_mnist_idx(write_spec):
    data = build(write_spec, f"""
        train: {{source: {{idx: {{images: {FASHION_MNIST / 'train-images-idx3-ubyte.gz'}, labels: {FASHION_MNIST / 'train-labels-idx1-ubyte.gz'}}}}}}}
    """)
    assert data.info["num_examples"]["train"] == 60000 and data.info["num_classes"] == 10


def _graph_ops(dataset):
    """The op types of a dataset's graph and of its functions' bodies (names aside)."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())
    return [n.op for n in graph.node], [[n.op for n in f.node_def] for f in graph.library.function]


def _read_fashion(kind):
    raw = gzip.decompress((FASHION_MNIST / f"{kind}-idx{3 if 'images' in kind else 1}-ubyte.gz").read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16 if "images" in kind else 8)


@needs_fashion
def test_fashion_mnist_spec_yields_the_hand_written_batches():
    # The real train arrays (60,000), so the shuffle buffer is the spec's `all` over the real
    # split exactly as the hand-written shuffle(n); only the first batches are compared: the
    # shuffle buffer is filled in full before the first batch, so they already depend on
    # every element, and comparing all 469 batches would add time and no coverage.
    # One order for every epoch, as the hand-written shuffle's first (the spec's own
    # reshuffling seeds each epoch's order by the epoch: see test_reshuffling_follows_the_epoch).
    spec = load_spec(SPECS / "fashion_mnist.yaml", ["data.train.stages.2.shuffle.reshuffle_each_iteration=false"])
    keras.utils.set_random_seed(spec.doc["seed"])
    declared = build_datasets(spec).train

    images = _read_fashion("train-images").reshape(-1, 28, 28)
    labels = _read_fashion("train-labels")

    def normalize_img(image, label):
        return tf.cast(image, tf.float32) / 255., label

    keras.utils.set_random_seed(spec.doc["seed"])
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE).cache().shuffle(len(images), reshuffle_each_iteration=False)
    hand_written = ds.batch(128).prefetch(tf.data.AUTOTUNE)

    assert declared.element_spec == hand_written.element_spec
    assert _graph_ops(declared) == _graph_ops(hand_written)  # same tf.data ops, same map function
    for (x1, y1), (x2, y2) in zip(declared.take(4), hand_written.take(4)):
        np.testing.assert_array_equal(x1.numpy(), x2.numpy())
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert not np.array_equal(y1.numpy(), labels[3 * 128:4 * 128])  # shuffled, not in file order


# ---------------------------------------------------------------------------- tfds


def test_mnist_spec_matches_the_hand_written_tfds_pipeline():
    tfds = pytest.importorskip("tensorflow_datasets")
    spec = load_spec(SPECS / "mnist.yaml", ["data.train.stages.2.shuffle.reshuffle_each_iteration=false"])
    with tfds.testing.mock_data(num_examples=40):
        keras.utils.set_random_seed(42)
        data = build_datasets(spec)
        (ds_train, ds_test), ds_info = tfds.load("mnist", split=["train", "test"], shuffle_files=True,
                                                 as_supervised=True, with_info=True)

        def normalize_img(image, label):
            return tf.cast(image, tf.float32) / 255., label

        ds_train = ds_train.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE).cache()
        ds_train = ds_train.shuffle(40, reshuffle_each_iteration=False)
        ds_train = ds_train.batch(128).prefetch(tf.data.AUTOTUNE)
        ds_test = ds_test.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE).batch(128).cache()
        ds_test = ds_test.prefetch(tf.data.AUTOTUNE)
        # tfds's MNIST images are [28, 28, 1]; the seed's pipeline keeps that channel axis
        expected = (tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int64))
        assert data.train.element_spec == ds_train.element_spec == expected
        assert data.test.element_spec == ds_test.element_spec == expected
        assert [op for op, _ in stage_ops(data.train)][-5:] == [op for op, _ in stage_ops(ds_train)][-5:]
        assert data.info["num_classes"] == 10 and data.info["class_names"] == [str(i) for i in range(10)]
        assert data.info["num_examples"] == {"train": 40, "validation": None, "test": 40}
        batch = next(iter(data.train))[0].numpy()
        assert batch.shape == (40, 28, 28, 1) and 0.0 <= batch.min() and batch.max() <= 1.0


def test_tfds_not_prepared_is_one_located_line(write_spec, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    import runner.data.sources.tfds

    spec = load(write_spec, "train: {source: {tfds: {name: mnist, split: train, data_dir: tfds, download: false}}}")
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    folder = tmp_path / "tfds/mnist/3.0.1"
    assert str(caught.value) == (
        f"{spec.file}:5:20: data.train.source.tfds: dataset 'mnist' is not prepared in {folder} and download is "
        "false (set data_dir to a directory holding a prepared copy, or set download: true)")

    monkeypatch.setattr(runner.data.sources.tfds, "_reachable", lambda host: False)  # offline, even on a networked CI
    spec = load(write_spec, "train: {source: {tfds: {name: mnist, split: train, data_dir: tfds}}}")
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    assert str(caught.value).split(": ", 1)[1] == (
        f"data.train.source.tfds: dataset 'mnist' is not prepared in {folder} and cannot be downloaded "
        "(storage.googleapis.com unreachable) (put t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz in a directory and set manual_dir to it, "
        "or set data_dir to a directory holding a prepared copy)")

    spec = load(write_spec, "train: {source: {tfds: {name: mnsit, split: train, data_dir: tfds}}}")
    with pytest.raises(SpecError, match=r"tfds.name: unknown tfds dataset 'mnsit' \(did you mean 'mnist'\?\)"):
        build_datasets(spec)


def test_tfds_manual_dir_is_passed_to_tfds(write_spec, tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    manual = tmp_path / "downloads"
    manual.mkdir()
    for url_info in tfds.builder("mnist").url_infos.values():
        (manual / url_info.filename).write_bytes(b"")  # present: no network needed
    calls = []
    real_load = tfds.load

    def recording_load(name, split, download, **kwargs):
        calls.append(dict(name=name, split=split, download=download, **kwargs))
        if not download:
            raise AssertionError("Dataset mnist: could not find data")  # what tfds says when not prepared
        with tfds.testing.mock_data(num_examples=3):
            return real_load(name, split=split, as_supervised=kwargs["as_supervised"], with_info=True)

    monkeypatch.setattr(tfds, "load", recording_load)
    data = build(write_spec, """
        train: {source: {tfds: {name: mnist, split: "train[:90%]", data_dir: tfds, manual_dir: downloads, shuffle_files: true}}}
    """)
    assert [c["download"] for c in calls] == [False, True]
    prepared = calls[1]
    assert prepared["download_and_prepare_kwargs"]["download_config"].manual_dir == str(manual)
    assert prepared["data_dir"] == str(tmp_path / "tfds")
    assert prepared["split"] == "train[:90%]" and prepared["shuffle_files"] is True
    assert len(arrays(data.train)) == 3


# ---------------------------------------------------------------------------- every example spec


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_spec_builds_its_data(path, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    spec = load_spec(path)
    texts = [split for split, s in spec.doc["data"].items() if "text_folder" in (s.get("source") or {})]
    if texts:  # the fortunes corpus is not in the repository: a small one of the same shape
        for name in ("computers", "politics", "science", "songs-poems"):
            (tmp_path / name).mkdir()
            for i in range(5):
                (tmp_path / name / f"{i:04d}.txt").write_text(f"a {name} text, number {i}\n")
        spec = load_spec(path, [f"data.{split}.source.text_folder.directory={tmp_path}" for split in texts])
    sources = [s.get("source", {}) for s in spec.doc["data"].values()]
    if any("idx" in s and not (spec.resolve_path(s["idx"]["images"])).is_file() for s in sources):
        pytest.skip(f"{path.name} reads files this machine does not have")
    keras.utils.set_random_seed(spec.doc.get("seed", 0))
    with tfds.testing.mock_data(num_examples=20):  # only tfds sources see mocked data
        data = build_datasets(spec)
    element = next(iter(data.train))
    assert element[0].shape[0] >= 1 and data.info["num_examples"]["train"] >= 1


def test_tfds_validation_fraction_slices_the_split(write_spec, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    splits = []
    real_load = tfds.load

    def spying_load(name, split, **kwargs):
        splits.append(split)
        return real_load(name, split=split, **kwargs)

    monkeypatch.setattr(tfds, "load", spying_load)
    with tfds.testing.mock_data(num_examples=40):
        data = build(write_spec, """
            train: {source: {tfds: {name: mnist, split: train, shuffle_files: true}}}
            validation: {fraction: 0.1}
        """)
    # tfds slices by absolute index, so shuffled files never mix the two parts
    assert splits == ["train", "train[0:36]", "train[36:40]"]
    assert data.info["num_examples"] == {"train": 36, "validation": 4, "test": None}


def test_the_spec_seed_makes_shuffle_deterministic(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.arange(50))
    data = "train: {source: {npy: {features: x.npy}}, stages: [{shuffle: {buffer_size: all}}]}"
    first = list(arrays(build(write_spec, data, seed=7).train))
    assert list(arrays(build(write_spec, data, seed=7).train)) == first
    assert list(arrays(build(write_spec, data, seed=8).train)) != first
    assert sorted(first) == list(range(50))


def test_reshuffling_follows_the_epoch(write_spec, tmp_path):
    """Epoch k's order depends on the seed and k only: a resumed run shuffles as the whole run did."""
    np.save(tmp_path / "x.npy", np.arange(50))
    data = "train: {source: {npy: {features: x.npy}}, stages: [{shuffle: {buffer_size: all}}]}"
    built = build(write_spec, data, seed=7)
    orders = []
    for epoch in (0, 1, 0, 1, 1):
        built.epoch.assign(epoch)
        orders.append(list(arrays(built.train)))
    assert orders[0] == orders[2] != orders[1] == orders[3] == orders[4]
    assert sorted(orders[1]) == list(range(50))
    again = build(write_spec, data, seed=7)  # another process, another build: the same orders
    again.epoch.assign(1)
    assert list(arrays(again.train)) == orders[1]
    assert int(built.train.cardinality()) == 50


def test_tfds_manual_files_that_are_not_the_registered_ones(write_spec, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    manual = tmp_path / "downloads"
    manual.mkdir()
    for url_info in tfds.builder("mnist").url_infos.values():
        (manual / url_info.filename).write_bytes(b"not mnist")
    spec = load(write_spec, "train: {source: {tfds: {name: mnist, split: train, data_dir: tfds, manual_dir: downloads}}}")
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    assert str(caught.value).split(": ", 1)[1] == (
        f"data.train.source.tfds.manual_dir: files in {manual} differ from the ones tfds registers for 'mnist' "
        "(checksum mismatch) (use the files from the dataset's registered URLs, or read yours with another "
        "source such as idx)")


def test_a_batch_larger_than_the_split_is_the_whole_split_at_once(write_spec, tmp_path):
    """tf.data allocates a batch of the size asked for when it knows the split's size: a batch
    size beyond the split is one batch of every element, as Keras's `fit` makes it."""
    np.save(tmp_path / "x.npy", np.zeros((50, 28, 28), np.float32))
    data = "train: {source: {npy: {features: x.npy}}, stages: [{map: {ops: [{scale: {divisor: 255.0}}]}}, {batch: {batch_size: 10000000}}]}"
    batches = [b.shape for b in build(write_spec, data).train]
    assert batches == [(50, 28, 28)]


def test_arrays_holding_nan_or_infinities_are_refused_at_their_key(write_spec, tmp_path):
    """A NaN feature makes its weights NaN at the first step, and a ReLU after them reads NaN as
    0: the loss stays finite while the units are dead. The source says so, located."""
    x = np.ones((20, 3), np.float32)
    x[7, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.zeros(20, np.float32))
    with pytest.raises(SpecError) as caught:
        build(write_spec, "train: {source: {npz: {path: nan.npz, features: x, label: y}}}")
    assert caught.value.message == (f"array 'x' of {tmp_path / 'nan.npz'} holds NaN (the first in row 7): "
                                    "fill or drop those rows first")
    assert caught.value.path == ("data", "train", "source", "npz", "features")
    y = np.zeros(20, np.float32)
    y[3] = np.inf
    np.save(tmp_path / "x.npy", np.ones((20, 3), np.float32))
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(SpecError, match=r"y.npy holds infinite values \(the first in row 3\)"):
        build(write_spec, "train: {source: {npy: {features: x.npy, label: y.npy}}}")
