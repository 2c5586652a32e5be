"""SavedModel export for TF Serving: the contract, proven without a server.

Covers the committed demo model in saved_models/ and a freshly exported one.
"""

import concurrent.futures
import http.server
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
from tensorflow_serving.apis import prediction_log_pb2

import keras

import frn_keras  # noqa: F401
from frn_keras import converters
from frn_keras import serving_requests
from frn_keras.export import export_for_serving
from frn_keras.export import main as export_main
from frn_keras.export import write_models_config
from tests import serving_emulation
from tests.example_modules import load_example

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO_MODEL_DIR = ROOT / "saved_models" / "digits_frn"
DEMO_VERSION_DIR = DEMO_MODEL_DIR / "1"
ENV = dict(os.environ, KERAS_BACKEND="tensorflow")

# Run in a fresh process as TF Serving's loader would: Keras and frn_keras
# cannot be imported (they are hidden from every import finder).
NO_KERAS_PRELUDE = textwrap.dedent(
    """
    import sys
    HIDDEN = ("keras", "frn_keras", "tf_keras")
    class Hide:
        def __init__(self, finder):
            self.finder = finder
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                return None
            return self.finder.find_spec(name, path, target)
        def invalidate_caches(self):
            getattr(self.finder, "invalidate_caches", lambda: None)()
    sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
    try:
        import keras
        raise SystemExit("keras is still importable")
    except ImportError:
        pass
    import numpy as np
    import tensorflow as tf
    """
)


def _keras_probabilities(model, images):
    logits = model.predict(images.astype("float32"), verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits))


@pytest.fixture(scope="module")
def digits():
    return load_example("train_digits").load_digits_split()


@pytest.fixture(scope="module")
def exported(digits, tmp_path_factory):
    """A briefly trained digits model, exported to a temporary folder."""
    example = load_example("train_digits")
    model, _, _ = example.train(epochs=2, verbose=0, data=digits)
    base = tmp_path_factory.mktemp("serving")
    version_dir = export_for_serving(
        model, str(base), "digits", version=3,
        warmup_images=digits[1][0][:8], verbose=False,
    )
    return model, pathlib.Path(version_dir)


@pytest.fixture(scope="module")
def demo_model():
    return keras.saving.load_model(DEMO_MODEL_DIR / "1.keras")


def _signature(version_dir):
    return tf.saved_model.load(str(version_dir)).signatures["serving_default"]


def _serve_in_fresh_process(version_dir, images, tmp_path):
    np.save(tmp_path / "images.npy", images)
    script = NO_KERAS_PRELUDE + textwrap.dedent(
        f"""
        loaded = tf.saved_model.load({str(version_dir)!r})
        serve = loaded.signatures["serving_default"]
        out = serve(images=tf.constant(np.load({str(tmp_path / "images.npy")!r})))
        np.save({str(tmp_path / "probabilities.npy")!r}, out["probabilities"].numpy())
        np.save({str(tmp_path / "classes.npy")!r}, out["classes"].numpy())
        assert not [m for m in sys.modules if m.split(".")[0] in HIDDEN]
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=ENV, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return (np.load(tmp_path / "probabilities.npy"),
            np.load(tmp_path / "classes.npy"))


def test_demo_model_serves_without_keras_like_its_keras_file(
    demo_model, digits, tmp_path
):
    images, labels = digits[1]
    probabilities, classes = _serve_in_fresh_process(
        DEMO_VERSION_DIR, images, tmp_path
    )
    want = _keras_probabilities(demo_model, images)
    np.testing.assert_allclose(probabilities, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(classes, want.argmax(-1))
    assert probabilities.dtype == np.float32 and classes.dtype == np.int64
    # The committed model is the trained one (README states its accuracy).
    assert np.mean(classes == labels) > 0.97


def test_fresh_export_serves_without_keras_like_the_model(
    exported, digits, tmp_path
):
    model, version_dir = exported
    images = digits[1][0][:50]
    probabilities, classes = _serve_in_fresh_process(
        version_dir, images, tmp_path
    )
    want = _keras_probabilities(model, images)
    np.testing.assert_allclose(probabilities, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(classes, want.argmax(-1))


def test_layout_and_models_config(exported):
    _, version_dir = exported
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert (version_dir.parent / "3.keras").is_file()
    # No staging folder is left behind for the server to trip over.
    assert sorted(p.name for p in version_dir.parent.iterdir()) == [
        "3", "3.keras"
    ]
    assert (DEMO_MODEL_DIR / "1.keras").is_file()
    config = (ROOT / "saved_models" / "models.config").read_text()
    assert 'name: "digits_frn"' in config
    assert 'base_path: "/models/digits_frn"' in config
    assert 'model_platform: "tensorflow"' in config


@pytest.mark.parametrize("which", ["demo", "fresh"])
def test_saved_model_cli_reports_the_signature(which, exported):
    version_dir = DEMO_VERSION_DIR if which == "demo" else exported[1]
    result = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli",
         "show", "--dir", str(version_dir), "--tag_set", "serve",
         "--signature_def", "serving_default"],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = " ".join(result.stdout.split())
    assert ("inputs['images'] tensor_info: dtype: DT_UINT8 "
            "shape: (-1, 8, 8, 3)") in out
    assert ("outputs['probabilities'] tensor_info: dtype: DT_FLOAT "
            "shape: (-1, 10)") in out
    assert "outputs['classes'] tensor_info: dtype: DT_INT64 shape: (-1)" in out
    assert "Method name is: tensorflow/serving/predict" in out


@pytest.mark.parametrize("which", ["demo", "fresh"])
def test_an_empty_batch_gets_an_empty_answer(which, exported):
    # A request of 0 images (a client's empty page): shape (0, 10) and (0,),
    # not a shape error from inside the graph.
    version_dir = DEMO_VERSION_DIR if which == "demo" else exported[1]
    out = _signature(version_dir)(images=tf.zeros((0, 8, 8, 3), tf.uint8))
    assert out["probabilities"].shape == (0, 10)
    assert out["classes"].shape == (0,)


def _saved_model_nodes(version_dir):
    """The nodes of a SavedModel's graph and of its functions, the names of
    those functions, and the meta graph."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(
        pathlib.Path(version_dir, "saved_model.pb").read_bytes())
    (meta_graph,) = saved_model.meta_graphs
    graph = meta_graph.graph_def
    nodes = list(graph.node) + [
        node for f in graph.library.function for node in f.node_def]
    functions = {f.signature.name for f in graph.library.function}
    return nodes, functions, meta_graph


def _saved_model_ops(version_dir):
    """The ops of a SavedModel's graph and of the functions it calls."""
    nodes, functions, meta_graph = _saved_model_nodes(version_dir)
    ops = {node.op for node in nodes}
    return ops - functions, meta_graph  # less calls of its own functions


@pytest.mark.parametrize("which", ["demo", "fresh"])
def test_graph_uses_only_stock_tensorflow_ops(which, exported):
    version_dir = DEMO_VERSION_DIR if which == "demo" else exported[1]
    ops, meta_graph = _saved_model_ops(version_dir)
    assert "Conv2D" in ops and "Rsqrt" in ops and "Maximum" in ops
    unknown = sorted(op for op in ops if op_def_registry.get(op) is None)
    assert unknown == [], f"ops that stock TensorFlow lacks: {unknown}"
    assert meta_graph.signature_def["serving_default"].method_name == (
        "tensorflow/serving/predict"
    )


def test_portable_copy_rewrites_euclidean_norm_and_keeps_outputs(
        exported, digits, tmp_path):
    # The served graph sums FRN's squares with EuclideanNorm (one pass over
    # memory), which TFLite and ONNX lack; the converters' copy has none.
    _, version_dir = exported
    assert "EuclideanNorm" in _saved_model_ops(version_dir)[0]
    path = converters.portable_copy(str(version_dir), str(tmp_path / "p"))
    ops, meta_graph = _saved_model_ops(path)
    assert "EuclideanNorm" not in ops and "Sqrt" in ops
    images = tf.constant(digits[1][0][:16])
    want = _signature(version_dir)(images=images)
    got = _signature(path)(images=images)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got["classes"], want["classes"])
    assert meta_graph.signature_def["serving_default"].inputs[
        "images"].dtype == tf.uint8.as_datatype_enum


def _op_count(version_dir, op):
    """How many nodes of type `op` the SavedModel's graph and functions
    hold."""
    nodes, _, _ = _saved_model_nodes(version_dir)
    return sum(node.op == op for node in nodes)


def test_served_model_has_its_frn_offsets_folded(exported, digits, tmp_path):
    # The digits model's last FRN -> TLU feeds the logits Dense: the served
    # copy moves its beta into the Dense's bias (one AddV2 fewer in each
    # traced copy of the forward pass) and predicts the same.
    model, version_dir = exported
    unfolded_dir = export_for_serving(
        model, str(tmp_path), "digits", fold_offsets=False, verbose=False)
    assert _op_count(version_dir, "AddV2") < _op_count(unfolded_dir, "AddV2")
    images = tf.constant(digits[1][0][:16])
    want = _keras_probabilities(model, digits[1][0][:16])
    for path in (version_dir, unfolded_dir):
        np.testing.assert_allclose(
            _signature(path)(images=images)["probabilities"], want,
            rtol=1e-5, atol=1e-6)
    # The .keras file beside the SavedModel is the model as trained.
    saved = keras.saving.load_model(version_dir.parent / "3.keras")
    assert [w.name for w in saved.weights] == [w.name for w in model.weights]


def test_command_line_can_serve_the_model_unfolded(exported, tmp_path):
    model, version_dir = exported
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    base = tmp_path / "models"
    for name, flags in (("folded", []), ("unfolded", ["--no-fold-offsets"])):
        export_main([str(keras_path), "--base-dir", str(base),
                     "--name", name, *flags])
    assert _op_count(base / "folded" / "1", "AddV2") == _op_count(
        version_dir, "AddV2")
    assert _op_count(base / "unfolded" / "1", "AddV2") > _op_count(
        version_dir, "AddV2")


def test_command_line_refuses_a_bad_model_name_version_or_file(tmp_path,
                                                               capsys):
    keras_path = tmp_path / "model.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(1)]).save(keras_path)
    for args, message in [
            ([str(tmp_path / "missing.keras")],
             f"no .keras model file at {tmp_path / 'missing.keras'}"),
            ([str(keras_path), "--version", "0"],
             "--version must be >= 1, got 0"),
            ([str(keras_path), "--name", "a/b"],
             "--name: Argument `model_name` must be a non-empty folder name"),
            ([str(keras_path), "--name", "one_logit"],
             "single logit or probability would be served as probability 1")]:
        with pytest.raises(SystemExit) as exit_info:
            export_main(["--base-dir", str(tmp_path / "models"),
                         "--name", "m", *args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("columnar", [False, True], ids=["instances", "inputs"])
def test_rest_bodies_give_the_same_predictions(exported, digits, columnar):
    model, version_dir = exported
    images = digits[1][0][:5]
    signature = _signature(version_dir)
    body = serving_requests.rest_request_body(images, columnar=columnar)
    assert ("inputs" in body) == columnar and ("instances" in body) != columnar
    out = serving_emulation.run(
        signature, serving_emulation.inputs_from_rest_body(body, signature)
    )
    want = _keras_probabilities(model, images)
    np.testing.assert_allclose(out["probabilities"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["classes"], want.argmax(-1))


def test_grpc_predict_request_gives_the_same_predictions(exported, digits):
    model, version_dir = exported
    images = digits[1][0][:7]
    request = serving_requests.grpc_predict_request(images, "digits", version=3)
    # Through the wire format, as a server receives it.
    request = type(request).FromString(request.SerializeToString())
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 3
    out = serving_emulation.run(
        _signature(version_dir),
        serving_emulation.inputs_from_predict_request(request),
    )
    want = _keras_probabilities(model, images)
    np.testing.assert_allclose(out["probabilities"], want, rtol=1e-5, atol=1e-6)


def _sent_pixels(images):
    """The pixels each request helper would send for `images`."""
    request = serving_requests.grpc_predict_request(images, "m")
    return {
        "rest instances": np.array(
            serving_requests.rest_request_body(images)["instances"]),
        "rest inputs": np.array(serving_requests.rest_request_body(
            images, columnar=True)["inputs"]["images"]),
        "grpc": tf.make_ndarray(request.inputs["images"]),
    }


def test_request_helpers_send_pixels_of_any_numeric_dtype_unchanged():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3))
    pixels[0, 0, 0] = [0, 255, 128]  # both ends of the range
    for images in (pixels.astype(np.uint8), pixels, pixels.astype(np.float32),
                   pixels.tolist()):
        for sent in _sent_pixels(images).values():
            np.testing.assert_array_equal(sent, pixels)
    assert _sent_pixels(pixels)["grpc"].dtype == np.uint8


@pytest.mark.parametrize("images, received", [
    # A uint8 cast would send 0, 44 and 255 for these three.
    (np.full((1, 2, 2, 3), 0.7), r"images.dtype=float64 with values in "
                                 r"\[0.7, 0.7\]"),
    (np.full((1, 2, 2, 3), 300), r"images.dtype=int64 with values in "
                                 r"\[300, 300\]"),
    (np.full((1, 2, 2, 3), -1), r"images.dtype=int64 with values in "
                                r"\[-1, -1\]"),
    (np.full((1, 2, 2, 3), np.nan), r"images.dtype=float64 with values in "
                                    r"\[nan, nan\]"),
    (np.zeros((2, 2, 3), np.uint8), r"images.shape=\(2, 2, 3\)"),
    (np.zeros((1, 2, 2, 1), np.uint8), r"images.shape=\(1, 2, 2, 1\)"),
    (np.zeros((1, 2, 2, 3), bool), r"images.dtype=bool"),
], ids=["unit_range", "above_255", "negative", "nan", "rank_3", "grey",
        "bool"])
def test_request_helpers_refuse_what_is_not_pixels(images, received,
                                                   tmp_path):
    with pytest.raises(ValueError, match=r"Received: " + received):
        serving_requests.rest_request_body(images)
    with pytest.raises(ValueError, match=r"Received: " + received):
        serving_requests.grpc_predict_request(images, "m")
    good = np.zeros((1, 2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match=r"Received: " + received):
        serving_requests.write_warmup_requests(str(tmp_path / "extra"), "m",
                                               [good, images])
    assert not (tmp_path / "extra").exists()  # nothing half written


# No TF Serving version; 0 and -1 would be sent and come back NOT_FOUND.
BAD_VERSIONS = [0, -1, True, 1.0, "2"]


def test_grpc_predict_request_checks_its_version():
    images = np.zeros((1, 2, 2, 3), np.uint8)
    request = serving_requests.grpc_predict_request(images, "m",
                                                    version=np.int64(2))
    assert request.model_spec.version.value == 2
    assert not serving_requests.grpc_predict_request(
        images, "m").model_spec.HasField("version")  # the server's latest
    for version in BAD_VERSIONS:
        with pytest.raises(ValueError,
                           match=rf"Received: version={version!r}"):
            serving_requests.grpc_predict_request(images, "m",
                                                  version=version)


@pytest.mark.parametrize("which", ["demo", "fresh"])
def test_warmup_records_parse_and_run(which, exported):
    version_dir = DEMO_VERSION_DIR if which == "demo" else exported[1]
    name = "digits_frn" if which == "demo" else "digits"
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    signature = _signature(version_dir)
    batch_sizes = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == name
        inputs = serving_emulation.inputs_from_predict_request(request)
        assert inputs["images"].dtype == tf.uint8
        out = serving_emulation.run(signature, inputs)
        assert np.all(np.isfinite(out["probabilities"]))
        batch_sizes.append(len(out["classes"]))
    assert batch_sizes[0] == 1 and len(batch_sizes) == 2


def test_bad_inputs_fail_with_a_clear_error_not_a_crash(exported, tmp_path):
    _, version_dir = exported
    script = NO_KERAS_PRELUDE + textwrap.dedent(
        f"""
        serve = tf.saved_model.load({str(version_dir)!r}).signatures[
            "serving_default"]
        bad = [
            ("rank 3", tf.zeros((8, 8, 3), tf.uint8), "must be uint8 of shape"),
            ("rank 5", tf.zeros((2, 8, 8, 3, 1), tf.uint8), "must be uint8"),
            ("4 channels", tf.zeros((2, 8, 8, 4), tf.uint8), "must be uint8"),
            ("1 channel", tf.zeros((2, 8, 24, 1), tf.uint8), "must be uint8"),
            ("height 7", tf.zeros((2, 7, 8, 3), tf.uint8), "must be uint8"),
            ("float32", tf.zeros((2, 8, 8, 3), tf.float32), "uint8"),
        ]
        for what, images, message in bad:
            try:
                serve(images=images)
            except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
                assert message in str(e), (what, str(e)[:500])
                print("rejected", what)
            else:
                raise SystemExit("accepted " + what)
        out = serve(images=tf.zeros((2, 8, 8, 3), tf.uint8))
        print("still serving", out["classes"].shape)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=ENV, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("rejected") == 6
    assert "still serving (2,)" in result.stdout


def test_mixed_precision_model_serves_float32(tmp_path, digits):
    keras.config.set_dtype_policy("mixed_float16")
    model = load_example("train_digits").build_model()
    keras.config.set_dtype_policy("float32")
    images = digits[1][0][:4]
    assert model(images.astype("float32")).dtype == "float16"
    version_dir = export_for_serving(model, str(tmp_path), "mp", verbose=False)
    out = _signature(version_dir)(images=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(
        out["probabilities"].numpy(), _keras_probabilities(model, images),
        atol=2e-3,
    )


def test_export_argument_errors(tmp_path, exported):
    model, _ = exported
    grey = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Received: model.input_shape="):
        export_for_serving(grey, str(tmp_path), "grey")
    for version in BAD_VERSIONS:
        with pytest.raises(ValueError,
                           match=rf"Received: version={version!r}"):
            export_for_serving(model, str(tmp_path), "m", version=version)
    for name in ["", "a/b", ".hidden"]:
        with pytest.raises(ValueError, match=rf"Received: model_name='{name}'"):
            export_for_serving(model, str(tmp_path), name)
    for shape in [(2, 8, 8), (0, 8, 8, 3)]:
        with pytest.raises(ValueError, match=rf"warmup_images.*shape="
                           rf"{re.escape(str(shape))}"):
            export_for_serving(model, str(tmp_path), "m",
                               warmup_images=np.zeros(shape, np.uint8))
    export_for_serving(model, str(tmp_path), "m", verbose=False)
    with pytest.raises(ValueError, match=r"overwrite=True.*Received: version=1"):
        export_for_serving(model, str(tmp_path), "m")
    export_for_serving(model, str(tmp_path), "m", overwrite=True, verbose=False)
    # A NumPy integer version names the same kind of folder as an int.
    assert export_for_serving(model, str(tmp_path), "m", np.int64(2),
                              verbose=False) == str(tmp_path / "m" / "2")


class SubclassedClassifier(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3)
        self.frn = frn_keras.FilterResponseNormalizationTLU()
        self.dense = keras.layers.Dense(3)

    def call(self, inputs):
        h = self.frn(self.conv(inputs / 255.0))
        return self.dense(keras.ops.mean(h, axis=(1, 2)))


def test_export_refuses_what_it_cannot_serve_as_classes(tmp_path):
    inputs = keras.Input((8, 8, 3))
    flat = keras.layers.Flatten()(inputs)
    subclassed = SubclassedClassifier()
    subclassed(np.zeros((1, 8, 8, 3), "float32"))
    for model, message in [
            (keras.Model(inputs, [keras.layers.Dense(2)(flat),
                                  keras.layers.Dense(3)(flat)]),
             r"one output.*Received: 2 outputs of shapes "
             r"\[\(None, 2\), \(None, 3\)\]"),
            (keras.Model(inputs, keras.layers.Dense(1)(flat)),
             r"single logit.*Received: model output shape \(None, 1\)"),
            (keras.Model(inputs, keras.layers.Reshape(())(
                keras.layers.Dense(1)(flat))),
             r"Received: model output shape \(None,\)"),
            (subclassed, r"wrap a subclassed model.*Received: model of type "
                         r"SubclassedClassifier")]:
        with pytest.raises(ValueError, match=message):
            export_for_serving(model, str(tmp_path), "m")
    assert not (tmp_path / "m").exists()


def test_wrapped_subclassed_and_list_output_models_serve_their_classes(
        tmp_path):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    subclassed = SubclassedClassifier()
    inputs = keras.Input((8, 8, 3))
    for name, model in [
            ("wrapped", keras.Model(inputs, subclassed(inputs))),
            ("in_a_list", keras.Model(inputs, [subclassed(inputs)])),
            ("in_a_dict", keras.Model(inputs, {"logits": subclassed(inputs)}))]:
        version_dir = export_for_serving(model, str(tmp_path), name,
                                         verbose=False)
        out = _signature(version_dir)(images=tf.constant(images))
        want = _keras_probabilities(subclassed, images)
        assert out["probabilities"].shape == (4, 3), name
        np.testing.assert_allclose(out["probabilities"].numpy(), want,
                                   rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(out["classes"].numpy(),
                                      want.argmax(-1), err_msg=name)


def test_a_class_per_pixel_is_served_per_pixel(tmp_path):
    # A segmentation head: FRN + TLU, then 1x1 logits of 5 classes.
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same")(
        keras.layers.Rescaling(1 / 255)(inputs))
    h = frn_keras.FilterResponseNormalizationTLU(
        beta_initializer="random_normal")(h)
    model = keras.Model(inputs, keras.layers.Conv2D(5, 1)(h))
    images = np.random.default_rng(6).integers(0, 256, (3, 8, 8, 3),
                                               dtype=np.uint8)
    version_dir = export_for_serving(model, str(tmp_path), "segment",
                                     verbose=False)
    out = _signature(version_dir)(images=tf.constant(images))
    want = _keras_probabilities(model, images)
    assert want.shape == (3, 8, 8, 5)
    np.testing.assert_allclose(out["probabilities"].numpy(), want,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), want.argmax(-1))


def test_model_that_outputs_probabilities_is_served_as_is(
        exported, digits, tmp_path):
    model, _ = exported
    inputs = keras.Input(model.input_shape[1:])
    softmax = keras.Model(inputs, keras.layers.Softmax()(model(inputs)))
    version_dir = export_for_serving(softmax, str(tmp_path), "probs",
                                     from_logits=False, verbose=False)
    images = digits[1][0][:4]
    out = _signature(version_dir)(images=tf.constant(images))
    want = _keras_probabilities(model, images)
    np.testing.assert_allclose(out["probabilities"].numpy(), want,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), want.argmax(-1))


def test_command_line_exports_a_keras_file(exported, tmp_path, digits):
    model, _ = exported
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    base = tmp_path / "models"
    (base / "notes").mkdir(parents=True)  # no version folder: not a model
    result = subprocess.run(
        [sys.executable, "-m", "frn_keras.export", str(keras_path),
         "--base-dir", str(base), "--name", "cli", "--version", "2"],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images = digits[1][0][:3]
    out = _signature(base / "cli" / "2")(images=tf.constant(images))
    np.testing.assert_allclose(
        out["probabilities"].numpy(), _keras_probabilities(model, images),
        rtol=1e-5, atol=1e-6,
    )
    config = (base / "models.config").read_text()
    assert 'name: "cli"' in config and "notes" not in config


def test_write_models_config_lists_each_model(tmp_path):
    path = write_models_config(str(tmp_path), ["a", "b"], "/srv")
    text = pathlib.Path(path).read_text()
    assert text.count("config {") == 2
    assert 'base_path: "/srv/b"' in text
    # A string would list one model per character; a quote would end the
    # name early in the text-format config.
    (tmp_path / "bad").mkdir()
    for names, received in [("ab", r"model_names='ab'"),
                            ([], r"model_names=\[\]"),
                            (["a", 'b"c'], r"model_name='b\"c'"),
                            (["a", "b/c"], r"model_name='b/c'")]:
        with pytest.raises(ValueError, match=r"Received: " + received):
            write_models_config(str(tmp_path / "bad"), names)
    assert not (tmp_path / "bad" / "models.config").exists()


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_tflite_conversion_matches_keras(exported, digits, tmp_path):
    model, version_dir = exported
    path = converters.to_tflite(str(version_dir), str(tmp_path / "m.tflite"))
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    images = digits[1][0][:16]
    out = runner(images=images)
    want = _keras_probabilities(model, images)
    np.testing.assert_allclose(out["probabilities"], want, atol=1e-5)
    np.testing.assert_array_equal(out["classes"], want.argmax(-1))


def test_tflite_conversion_refuses_ops_without_a_builtin(tmp_path):
    # A .tflite that needs the Flex delegate would not load in the stock
    # TFLite runtime; the converter must say so at conversion instead.
    class Serving(tf.Module):
        @tf.function(input_signature=[
            tf.TensorSpec([None, 2, 2, 3], tf.uint8, "images")])
        def serve(self, images):
            pixels = tf.cast(tf.transpose(images, [0, 3, 1, 2]), tf.float32)
            scores = tf.linalg.det(pixels)  # no TFLite builtin
            return {"probabilities": scores, "classes": tf.argmax(scores, -1)}

    module = Serving()
    tf.saved_model.save(module, str(tmp_path / "1"),
                        signatures={"serving_default": module.serve})
    # TFLite's ConverterError is not exported under tf.lite; match the op.
    with pytest.raises(Exception, match="MatrixDeterminant"):
        converters.to_tflite(str(tmp_path / "1"), str(tmp_path / "m.tflite"))


SERVING_API_MODULES = ("tensorflow_serving", "tensorflow_serving.apis",
                       "tensorflow_serving.apis.predict_pb2",
                       "tensorflow_serving.apis.prediction_log_pb2")


def test_without_the_serving_api_its_users_say_what_to_install(
        exported, tmp_path, monkeypatch, capsys):
    # Hidden (None in sys.modules makes its import fail), as on an install
    # without the `serving` extra: the export fails before writing anything,
    # and every error names the package and the extra.
    for module in SERVING_API_MODULES:
        monkeypatch.setitem(sys.modules, module, None)
    model, version_dir = exported
    wanted = r"tensorflow-serving-api.*frn_keras\[serving\]"
    with pytest.raises(ImportError, match=wanted):
        export_for_serving(model, str(tmp_path / "models"), "m")
    assert not (tmp_path / "models").exists()
    pixels = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ImportError, match=wanted):
        serving_requests.grpc_predict_request(pixels, "m")
    with pytest.raises(ImportError, match=wanted):
        serving_requests.write_warmup_requests(str(tmp_path / "w"), "m",
                                               [pixels])
    assert not (tmp_path / "w").exists()
    keras_path = version_dir.parent / f"{version_dir.name}.keras"
    assert keras_path.is_file()
    with pytest.raises(SystemExit) as exit_info:
        export_main([str(keras_path), "--base-dir", str(tmp_path / "models"),
                     "--name", "m"])
    assert exit_info.value.code == 2
    assert re.search(wanted, capsys.readouterr().err)
    assert not (tmp_path / "models").exists()


def test_onnx_conversion_without_tf2onnx_says_what_to_install(
        exported, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    _, version_dir = exported
    with pytest.raises(ImportError, match=r"`tf2onnx`.*frn_keras\[onnx\]"):
        converters.to_onnx(str(version_dir), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_conversion_matches_keras(exported, digits, tmp_path):
    import onnxruntime

    model, version_dir = exported
    path = converters.to_onnx(str(version_dir), str(tmp_path / "m.onnx"))
    session = onnxruntime.InferenceSession(path)
    images = digits[1][0][:16]
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"images": images})))
    want = _keras_probabilities(model, images)
    np.testing.assert_allclose(out["probabilities"], want, atol=1e-5)
    np.testing.assert_array_equal(out["classes"], want.argmax(-1))


def _query_server(args, digits, count):
    """Runs examples/query_server.py; checks that it prints the demo model's
    own classes for the first `count` held-out digits and their accuracy."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "query_server.py"), *args,
         "--count", str(count)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images, labels = digits[1][0][:count], digits[1][1][:count]
    want = _signature(DEMO_VERSION_DIR)(images=tf.constant(images))[
        "classes"].numpy()
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == f"classes: {want.tolist()}"
    accuracy = float(lines[-1].split()[-1])
    assert accuracy == pytest.approx(np.mean(want == labels), abs=1e-4)
    assert accuracy > 0.95, result.stdout


class _JsonHandler(http.server.BaseHTTPRequestHandler):
    """A REST endpoint: each POST's JSON body goes to `answer(body)`, which
    returns the status and the JSON reply."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, reply = self.answer(body)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_query_server_example_against_emulated_rest_server(digits):
    signature = _signature(DEMO_VERSION_DIR)
    paths = []

    class PredictHandler(_JsonHandler):
        def answer(self, body):
            paths.append(self.path)
            out = serving_emulation.run(
                signature, serving_emulation.inputs_from_rest_body(body, signature)
            )
            return 200, serving_emulation.rest_row_response(out)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PredictHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _query_server(
            ["--rest", f"http://127.0.0.1:{server.server_address[1]}"],
            digits, count=40)
    finally:
        server.shutdown()
        server.server_close()
    assert paths == ["/v1/models/digits_frn:predict"]


def test_query_server_example_against_emulated_grpc_server(digits):
    import grpc
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    signature = _signature(DEMO_VERSION_DIR)
    specs = []

    class PredictionService(
            prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            specs.append((request.model_spec.name,
                          request.model_spec.signature_name))
            out = serving_emulation.run(
                signature,
                serving_emulation.inputs_from_predict_request(request))
            response = predict_pb2.PredictResponse()
            for name, value in out.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        _query_server(["--grpc", f"127.0.0.1:{port}"], digits, count=40)
    finally:
        server.stop(grace=None)
    assert specs == [("digits_frn", "serving_default")]


def _run_query_server(args):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "query_server.py"), *args,
         "--count", "2"],
        env=ENV, capture_output=True, text=True, timeout=300,
    )


def test_query_server_reports_what_the_server_said_or_why_none_did():
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    message = "Servable not found for request: Latest(digits_frn)"

    class NotFoundHandler(_JsonHandler):
        def answer(self, body):
            return 404, {"error": message}

    class NotFoundService(
            prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            context.abort(grpc.StatusCode.NOT_FOUND, message)

    http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                  NotFoundHandler)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    grpc_server = grpc.server(concurrent.futures.ThreadPoolExecutor(1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        NotFoundService(), grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    rest = f"http://127.0.0.1:{http_server.server_address[1]}"
    closed = _free_port()
    try:
        for args, said in [
                (["--rest", rest], f"{rest}: HTTP 404: {message}"),
                (["--grpc", f"127.0.0.1:{grpc_port}"],
                 f"127.0.0.1:{grpc_port}: gRPC NOT_FOUND: {message}"),
                (["--rest", f"http://127.0.0.1:{closed}"],
                 f"http://127.0.0.1:{closed}: cannot reach the server ("),
                (["--grpc", f"127.0.0.1:{closed}"],
                 f"127.0.0.1:{closed}: gRPC UNAVAILABLE: ")]:
            result = _run_query_server(args)
            assert result.returncode == 1, result.stderr[-3000:]
            assert said in result.stderr, result.stderr[-3000:]
            assert "Traceback" not in result.stderr
    finally:
        http_server.shutdown()
        http_server.server_close()
        grpc_server.stop(grace=None)
    result = _run_query_server(["--rest", "localhost:8501"])
    assert result.returncode == 2
    assert "--rest needs an http:// or https:// URL" in result.stderr


def test_query_server_writes_a_curl_body(tmp_path):
    path = tmp_path / "request.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "query_server.py"),
         "--write-request", str(path), "--count", "3"],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads(path.read_text())
    assert np.asarray(body["instances"]).shape == (3, 8, 8, 3)
    assert body["signature_name"] == "serving_default"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="no tensorflow_model_server binary on PATH (it is not on PyPI or "
    "Debian, so it cannot be installed on these machines)",
)
def test_live_tensorflow_model_server_over_rest(demo_model, digits):
    port = _free_port()
    server = subprocess.Popen(
        ["tensorflow_model_server", f"--rest_api_port={port}",
         "--port=0", "--model_name=digits_frn",
         f"--model_base_path={DEMO_MODEL_DIR}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        images = digits[1][0][:4]
        body = json.dumps(serving_requests.rest_request_body(images)).encode()
        url = f"http://127.0.0.1:{port}/v1/models/digits_frn:predict"
        for _ in range(60):
            try:
                with urllib.request.urlopen(url, body, timeout=5) as r:
                    predictions = json.load(r)["predictions"]
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("tensorflow_model_server did not answer in 60 s")
        got = np.array([p["probabilities"] for p in predictions])
        np.testing.assert_allclose(
            got, _keras_probabilities(demo_model, images), atol=1e-5
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
