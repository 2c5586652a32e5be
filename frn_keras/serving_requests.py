"""Requests for a model served by TF Serving with the frn_keras contract.

The contract (see `frn_keras.export`): signature `serving_default`, input
`images` (uint8 `[batch, H, W, 3]`), outputs `probabilities` and `classes`.
These helpers build the REST bodies and gRPC `PredictRequest`s a client
sends, and the warm-up file TF Serving replays when it loads a model. The
gRPC helpers need the `tensorflow-serving-api` package (`pip install
"frn_keras[serving]"`).
"""

import os

import numpy as np
import tensorflow as tf

INPUT_NAME = "images"
SIGNATURE_NAME = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"


def rest_request_body(images, columnar=False, signature_name=SIGNATURE_NAME):
    """The JSON body (a dict) of a TF Serving REST `:predict` request.

    Args:
        images: uint8 array `(batch, H, W, 3)`.
        columnar: `False` for the row format `{"instances": [...]}` (one
            entry per image), `True` for the column format
            `{"inputs": {"images": [...]}}`. Defaults to `False`.
        signature_name: Defaults to `"serving_default"`.
    """
    pixels = np.asarray(images, np.uint8).tolist()
    if columnar:
        return {"signature_name": signature_name,
                "inputs": {INPUT_NAME: pixels}}
    return {"signature_name": signature_name, "instances": pixels}


def grpc_predict_request(
    images, model_name, signature_name=SIGNATURE_NAME, version=None
):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for `images`."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[INPUT_NAME].CopyFrom(
        tf.make_tensor_proto(np.asarray(images, np.uint8))
    )
    return request


def write_warmup_requests(assets_extra_dir, model_name, batches):
    """Writes TF Serving's `assets.extra/tf_serving_warmup_requests`.

    Args:
        assets_extra_dir: The version's `assets.extra` folder (created).
        model_name: The model's name on the server.
        batches: uint8 image batches, one `PredictionLog` record each.

    Returns:
        The path of the written file.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    os.makedirs(assets_extra_dir, exist_ok=True)
    path = os.path.join(assets_extra_dir, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for images in batches:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=grpc_predict_request(images, model_name)
                )
            )
            writer.write(log.SerializeToString())
    return path
