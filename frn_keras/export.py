"""SavedModel export of image classifiers for TF Serving.

`export_for_serving` writes TF Serving's layout

```
<base_dir>/<model_name>/<version>/saved_model.pb
                                  variables/
                                  assets.extra/tf_serving_warmup_requests
<base_dir>/<model_name>/<version>.keras      # the Keras model, beside it
```

with one `serving_default` signature (method `tensorflow/serving/predict`):

- input `images`: uint8 `[batch, H, W, 3]` raw pixels. The model receives
  them as float32 and must contain its own preprocessing (e.g. a
  `keras.layers.Rescaling` layer), so the server needs nothing else.
- outputs `probabilities`: float32 `[batch, classes]` (float32 also under
  mixed precision) and `classes`: int64 `[batch]`; for a model with a class
  per position (segmentation), `[batch, ..., classes]` and `[batch, ...]`.

The graph uses stock TensorFlow ops only (FRN and TLU are plain math), so
neither Python, Keras nor frn_keras is needed to serve it. Keras 3's export
writes the `DisableCopyOnRead` op, which TF Serving supports from 2.21 on.

Command line, for a saved `.keras` model:

    python -m frn_keras.export runs/digits.keras --base-dir saved_models \\
        --name digits_frn --version 1
"""

import argparse
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from frn_keras._graph import is_graph_model
from frn_keras._optional import serving_api
from frn_keras.offset_folding import fold_frn_offsets
from frn_keras.offset_folding import has_frn_offsets_to_fold
from frn_keras.serving_requests import INPUT_NAME
from frn_keras.serving_requests import SIGNATURE_NAME
from frn_keras.serving_requests import check_version
from frn_keras.serving_requests import write_warmup_requests


def export_for_serving(
    model,
    base_dir,
    model_name,
    version=1,
    from_logits=True,
    warmup_images=None,
    overwrite=False,
    verbose=True,
    fold_offsets=True,
):
    """Exports an image classifier as a TF Serving SavedModel.

    The SavedModel serves `frn_keras.fold_frn_offsets(model)` where that
    folds anything: the same function, with the offset of each FRN that
    feeds only 1x1 convolutions or `Dense` layers moved into their biases
    (one elementwise pass fewer per such FRN). The `.keras` file beside it
    is `model` itself.

    Args:
        model: A Functional or Sequential Keras model taking raw pixels
            `(batch, H, W, 3)` (as float32) and returning one output of
            logits or probabilities over its last axis: `(batch, classes)`,
            or `(batch, ..., classes)` for a class per position (a
            segmentation model's per-pixel classes), with at least 2
            classes. A subclassed model can be wrapped:
            `keras.Model(inputs, subclassed(inputs))` with
            `inputs = keras.Input((H, W, 3))`.
        base_dir: TF Serving's model root (e.g. `"saved_models"`).
        model_name: The model's name on the server (a folder name).
        version: Positive integer version (a sub-folder). Defaults to `1`.
        from_logits: Whether the model returns logits, to which a softmax is
            applied in the graph. Defaults to `True`.
        warmup_images: uint8 images `(n, H, W, 3)` for the TF Serving
            warm-up requests (sent as one request of batch 1 and one of
            batch `n`). Defaults to `None`: 32 random images.
        overwrite: Whether to replace an existing version. Defaults to
            `False`.
        verbose: Whether to print what was written. Defaults to `True`.
        fold_offsets: Whether to serve the model with its FRN offsets
            folded (above). Defaults to `True`.

    Returns:
        The path of the version directory.

    Raises:
        ValueError: for a model that is subclassed, whose input is not
            `(batch, H, W, 3)` with known `H` and `W`, or that has several
            outputs or no last axis of 2 or more classes; a bad
            `model_name` or `version`, warm-up images of another shape, or
            an existing version without `overwrite=True`.
        ImportError: If `tensorflow-serving-api`, which writes the warm-up
            requests, is not installed (`pip install "frn_keras[serving]"`);
            checked before anything is written.
    """
    height, width = _image_size(model)
    _check_class_axis(model)
    _check_model_name(model_name)
    version = check_version(version)
    if warmup_images is None:
        rng = np.random.default_rng(0)
        warmup_images = rng.integers(
            0, 256, size=(32, height, width, 3), dtype=np.uint8
        )
    warmup_images = np.asarray(warmup_images)
    if warmup_images.dtype != np.uint8 or warmup_images.shape[1:] != (
        height, width, 3
    ) or len(warmup_images) < 1:
        raise ValueError(
            "Argument `warmup_images` must be uint8 images of shape "
            f"(n, {height}, {width}, 3). Received: shape="
            f"{warmup_images.shape}, dtype={warmup_images.dtype}"
        )

    model_dir = os.path.join(base_dir, model_name)
    version_dir = os.path.join(model_dir, str(version))
    keras_path = os.path.join(model_dir, f"{version}.keras")
    if os.path.exists(version_dir) and not overwrite:
        raise ValueError(
            f"Version {version} of '{model_name}' exists at {version_dir}; "
            "pass overwrite=True (--overwrite) to replace it. "
            f"Received: version={version}"
        )
    serving_api("prediction_log_pb2")  # before anything is written
    os.makedirs(model_dir, exist_ok=True)
    served = _served_model(model, fold_offsets)

    # Written to a temporary folder and moved into place, so that a server
    # polling `model_dir` never sees a half-written version.
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir)
    try:
        archive = keras.export.ExportArchive()
        archive.track(served)
        archive.add_endpoint(
            name=SIGNATURE_NAME,
            fn=_serving_function(served, from_logits, height, width),
            input_signature=[
                tf.TensorSpec(
                    [None, height, width, 3], tf.uint8, name=INPUT_NAME
                )
            ],
        )
        archive.write_out(staging, verbose=False)
        write_warmup_requests(
            os.path.join(staging, "assets.extra"),
            model_name,
            [warmup_images[:1], warmup_images],
        )
        if os.path.exists(version_dir):
            shutil.rmtree(version_dir)
        os.replace(staging, version_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    model.save(keras_path)
    if verbose:
        print(f"exported SavedModel to {version_dir} and {keras_path}")
    return version_dir


def write_models_config(base_dir, model_names, server_base_dir="/models"):
    """Writes TF Serving's `models.config` listing `model_names`.

    Args:
        base_dir: Where to write `models.config` (the folder mounted into
            the server at `server_base_dir`).
        model_names: Names of the models under `base_dir`.
        server_base_dir: The folder's path inside the server (container).
            Defaults to `"/models"`.

    Returns:
        The path of the written file.

    Raises:
        ValueError: If `model_names` is not a non-empty list of folder names
            (a single string, say).
    """
    if isinstance(model_names, str) or not model_names:
        raise ValueError(
            "Argument `model_names` must be a non-empty list of model "
            f"names. Received: model_names={model_names!r}"
        )
    for name in model_names:
        _check_model_name(name)
    entries = "".join(
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{server_base_dir}/{name}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for name in model_names
    )
    path = os.path.join(base_dir, "models.config")
    with open(path, "w") as f:
        f.write("model_config_list {\n" + entries + "}\n")
    return path


def _check_model_name(model_name):
    """A model's folder under the base directory, and its name in
    `models.config` (which quotes it)."""
    if not isinstance(model_name, str) or not model_name or (
        os.sep in model_name or model_name.startswith(".")
        or '"' in model_name or "\\" in model_name or "\n" in model_name
    ):
        raise ValueError(
            "Argument `model_name` must be a non-empty folder name, not "
            f"starting with '.', without {os.sep!r}, '\"', '\\' or a "
            f"newline. Received: model_name={model_name!r}"
        )


def _image_size(model):
    if not is_graph_model(model):
        raise ValueError(
            "export_for_serving needs a Functional or Sequential model, whose "
            "input shape it serves; wrap a subclassed model: "
            "`keras.Model(inputs, model(inputs))` with "
            "`inputs = keras.Input((H, W, 3))`. Received: model of type "
            f"{type(model).__name__}"
        )
    shape = model.input_shape
    if (
        isinstance(shape, list)
        or len(shape) != 4
        or shape[3] != 3
        or None in shape[1:3]
    ):
        raise ValueError(
            "export_for_serving needs a model with one image input of shape "
            "(batch, H, W, 3) with known H and W. "
            f"Received: model.input_shape={shape}"
        )
    return shape[1], shape[2]


def _check_class_axis(model):
    """One output whose last axis holds the classes, at least 2 of them: a
    single logit would be served as probability 1 and class 0."""
    shapes = [tuple(output.shape) for output in model.outputs]
    if len(shapes) != 1:
        raise ValueError(
            "export_for_serving needs a model with one output (logits or "
            f"probabilities). Received: {len(shapes)} outputs of shapes "
            f"{shapes}"
        )
    (shape,) = shapes
    if len(shape) < 2 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(
            "export_for_serving needs a model whose output has its classes "
            "last, 2 or more of them: (batch, classes) or (batch, ..., "
            "classes). A single logit or probability would be served as "
            "probability 1 and class 0; give the model one output per "
            f"class. Received: model output shape {shape}"
        )


def _served_model(model, fold_offsets):
    """`model` with its FRN offsets folded, if asked and if any fold."""
    if fold_offsets and has_frn_offsets_to_fold(model):
        return fold_frn_offsets(model)
    return model


def _serving_function(model, from_logits, height, width):
    def serve(images):
        images = _checked_images(images, height, width)
        # A model built with `outputs=[x]` or `{"name": x}` returns x in a
        # list or dict.
        (outputs,) = tf.nest.flatten(
            model(tf.cast(images, tf.float32), training=False))
        # Under mixed precision the model returns float16: serve float32.
        outputs = tf.cast(outputs, tf.float32)
        probabilities = tf.nn.softmax(outputs) if from_logits else outputs
        return {
            "probabilities": probabilities,
            "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    return serve


def _checked_images(images, height, width):
    """Fails with InvalidArgument, in the graph, on a wrongly shaped input.

    The served signature does not check shapes (a rank-3 input reached the
    oneDNN convolution and aborted the process), and grappler folds checks
    of the rank away using the declared shape. Only the runtime `Shape` is
    trusted: padded with zeros, its entries 1..4 must be `[H, W, 3, 0]`,
    which also rejects a rank below or above 4.
    """
    shape = tf.concat([tf.shape(images), tf.zeros([4], tf.int32)], axis=0)
    check = tf.debugging.assert_equal(
        shape[1:5],
        tf.constant([height, width, 3, 0], tf.int32),
        message=(
            f"`images` must be uint8 of shape [batch, {height}, {width}, 3]; "
            "received the shape below, without its batch size and padded "
            "with zeros"
        ),
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def main(argv=None):
    """`python -m frn_keras.export MODEL.keras --name NAME`: loads the
    model, writes `BASE_DIR/NAME/VERSION` with `export_for_serving` and
    rewrites `BASE_DIR/models.config` for every model there."""
    parser = argparse.ArgumentParser(
        prog="python -m frn_keras.export",
        description="Export a .keras image classifier for TF Serving.",
    )
    parser.add_argument("keras_model", help="path of a saved .keras model")
    parser.add_argument("--base-dir", default="saved_models")
    parser.add_argument("--name", required=True, help="model name")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument(
        "--probabilities", dest="from_logits", action="store_false",
        help="the model already outputs probabilities (no softmax added)",
    )
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--no-fold-offsets", dest="fold_offsets", action="store_false",
        help="serve the model as it is, without folding FRN offsets into "
             "the 1x1 convolutions / Dense layers that read them",
    )
    args = parser.parse_args(argv)
    # Checked before the model loads (slow for a large one).
    if not os.path.isfile(args.keras_model):
        parser.error(f"no .keras model file at {args.keras_model}")
    if args.version < 1:
        parser.error(f"--version must be >= 1, got {args.version}")
    try:
        _check_model_name(args.name)
    except ValueError as error:
        parser.error(f"--name: {error}")
    try:
        serving_api("prediction_log_pb2")
    except ImportError as error:
        parser.error(str(error))

    import frn_keras  # noqa: F401  (registers the layers for loading)

    model = keras.saving.load_model(args.keras_model)
    try:
        export_for_serving(
            model, args.base_dir, args.name, version=args.version,
            from_logits=args.from_logits, overwrite=args.overwrite,
            fold_offsets=args.fold_offsets,
        )
    except ValueError as error:  # the model, or an existing version
        parser.error(str(error))
    print(f"wrote {write_models_config(args.base_dir, _model_names(args.base_dir))}")


def _model_names(base_dir):
    """The folders of `base_dir` that hold a numbered version."""
    return sorted(
        name for name in os.listdir(base_dir)
        if os.path.isdir(os.path.join(base_dir, name))
        and any(v.isdigit() for v in os.listdir(os.path.join(base_dir, name)))
    )


if __name__ == "__main__":
    main()
