"""Query a TF Serving server that serves the digits demo model.

Sends held-out digits (raw uint8 RGB pixels, the serving contract) over REST
or gRPC and prints the accuracy of the answers.

    python examples/query_server.py --rest http://localhost:8501
    python examples/query_server.py --grpc localhost:8500
    python examples/query_server.py --write-request request.json  # for curl
"""

import argparse
import json
import os
import pathlib
import sys
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from train_digits import load_digits_split  # noqa: E402

from frn_keras import serving_requests  # noqa: E402

MODEL_NAME = "digits_frn"


def predict_rest(server, images, model_name=MODEL_NAME, timeout=30):
    """Returns the predicted classes from `SERVER/v1/models/NAME:predict`."""
    body = json.dumps(serving_requests.rest_request_body(images)).encode()
    url = f"{server.rstrip('/')}/v1/models/{model_name}:predict"
    request = urllib.request.Request(
        url, body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        predictions = json.load(response)["predictions"]
    return np.array([p["classes"] for p in predictions])


def predict_grpc(target, images, model_name=MODEL_NAME, timeout=30):
    """Returns the predicted classes from TF Serving's gRPC Predict."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(
            serving_requests.grpc_predict_request(images, model_name),
            timeout=timeout,
        )
    return tf.make_ndarray(response.outputs["classes"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", metavar="URL", help="e.g. http://localhost:8501")
    where.add_argument("--grpc", metavar="HOST:PORT", help="e.g. localhost:8500")
    where.add_argument("--write-request", metavar="FILE",
                       help="write a REST body for curl and exit")
    parser.add_argument("--count", type=int, default=32,
                        help="how many held-out digits to send")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be >= 1")

    _, (images, labels) = load_digits_split()
    images, labels = images[: args.count], labels[: args.count]
    if args.write_request:
        with open(args.write_request, "w") as f:
            json.dump(serving_requests.rest_request_body(images), f)
        print(f"wrote {len(images)} images to {args.write_request}")
        return
    if args.rest:
        classes = predict_rest(args.rest, images)
    else:
        classes = predict_grpc(args.grpc, images)
    print(f"classes: {classes.tolist()}")
    print(f"accuracy on {len(images)} held-out digits: "
          f"{np.mean(classes == labels):.4f}")


if __name__ == "__main__":
    main()
