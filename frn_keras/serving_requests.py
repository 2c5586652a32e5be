"""Requests for a model served by TF Serving with the frn_keras contract.

The contract (see `frn_keras.export`): signature `serving_default`, input
`images` (uint8 `[batch, H, W, 3]`), outputs `probabilities` and `classes`.
These helpers build the REST bodies and gRPC `PredictRequest`s a client
sends, and the warm-up file TF Serving replays when it loads a model. The
gRPC helpers need the `tensorflow-serving-api` package (`pip install
"frn_keras[serving]"`).
"""

import numbers
import os

import numpy as np
import tensorflow as tf

from frn_keras._optional import serving_api

INPUT_NAME = "images"
SIGNATURE_NAME = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"


def check_version(version):
    """Returns `version` as an `int`, checked to be a TF Serving model
    version: an integer >= 1 (a Python or NumPy integer; not a bool).

    Raises:
        ValueError: For anything else (0, -1, 1.0, "2", True).
    """
    if isinstance(version, bool) or not isinstance(
            version, numbers.Integral) or version < 1:
        raise ValueError(
            "Argument `version` must be a positive integer (TF Serving's "
            f"version folder). Received: version={version!r}"
        )
    return int(version)


def as_pixels(images):
    """`images` as the uint8 array the signature takes, checked first.

    A cast alone would corrupt pixels silently (0.7 -> 0, 300 -> 44,
    -1 -> 255), so anything that is not already pixels is refused.

    Args:
        images: RGB pixels `(batch, H, W, 3)`, uint8 or integral values in
            0..255 of another numeric dtype.

    Returns:
        A uint8 NumPy array of the same values.

    Raises:
        ValueError: If `images` is not of shape `(batch, H, W, 3)`, or holds
            values that are not whole numbers in 0..255 (images scaled to
            [0, 1], say).
    """
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(
            "Argument `images` must be a batch of RGB images of shape "
            f"(batch, height, width, 3). Received: images.shape={array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if not (np.issubdtype(array.dtype, np.integer)
            or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(
            "Argument `images` must hold numeric pixels 0..255. Received: "
            f"images.dtype={array.dtype}"
        )
    # NaN fails the whole-number test, infinities the range.
    if array.size and not (np.all(array == np.round(array))
                           and array.min() >= 0 and array.max() <= 255):
        raise ValueError(
            "Argument `images` must hold whole-number pixels 0..255 (the "
            "signature takes uint8; scale [0, 1] images by 255 first). "
            f"Received: images.dtype={array.dtype} with values in "
            f"[{array.min()}, {array.max()}]"
        )
    return array.astype(np.uint8)


def rest_request_body(images, columnar=False, signature_name=SIGNATURE_NAME):
    """The JSON body (a dict) of a TF Serving REST `:predict` request.

    Args:
        images: RGB pixels `(batch, H, W, 3)`, uint8 or integral values in
            0..255 of another numeric dtype.
        columnar: `False` for the row format `{"instances": [...]}` (one
            entry per image), `True` for the column format
            `{"inputs": {"images": [...]}}`. Defaults to `False`.
        signature_name: Defaults to `"serving_default"`.

    Raises:
        ValueError: If `images` is not a batch of RGB pixels 0..255 (see
            `as_pixels`).
    """
    pixels = as_pixels(images).tolist()
    if columnar:
        return {"signature_name": signature_name,
                "inputs": {INPUT_NAME: pixels}}
    return {"signature_name": signature_name, "instances": pixels}


def grpc_predict_request(
    images, model_name, signature_name=SIGNATURE_NAME, version=None
):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for `images`.

    Args:
        images: RGB pixels `(batch, H, W, 3)`, uint8 or integral values in
            0..255 of another numeric dtype.
        model_name: The model's name on the server.
        signature_name: Defaults to `"serving_default"`.
        version: The model version to ask for (an integer >= 1), or
            `None` (the server's latest). Defaults to `None`.

    Returns:
        The `PredictRequest`, its input `images` a uint8 tensor.

    Raises:
        ValueError: If `images` is not a batch of RGB pixels 0..255, or
            `version` is not `None` or an integer >= 1.
        ImportError: If `tensorflow-serving-api` is not installed.
    """
    predict_pb2 = serving_api("predict_pb2")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = check_version(version)
    request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(as_pixels(images)))
    return request


def write_warmup_requests(assets_extra_dir, model_name, batches):
    """Writes TF Serving's `assets.extra/tf_serving_warmup_requests`.

    Args:
        assets_extra_dir: The version's `assets.extra` folder (created).
        model_name: The model's name on the server.
        batches: Image batches `(batch, H, W, 3)` of pixels 0..255, one
            `PredictionLog` record each.

    Returns:
        The path of the written file.

    Raises:
        ImportError: If `tensorflow-serving-api` is not installed.
    """
    prediction_log_pb2 = serving_api("prediction_log_pb2")
    # Every batch is checked before the file is opened: no partial file.
    logs = [
        prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(
                request=grpc_predict_request(images, model_name)
            )
        )
        for images in batches
    ]
    os.makedirs(assets_extra_dir, exist_ok=True)
    path = os.path.join(assets_extra_dir, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path
