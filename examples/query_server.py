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
import urllib.error
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


def server_errors():
    """The exceptions that mean the server refused or could not be
    reached."""
    import grpc

    return urllib.error.URLError, grpc.RpcError


def server_error_text(error):
    """One of `server_errors()` in one line: the server's own message for
    an HTTP error status (TF Serving answers `{"error": ...}`), the status
    and details of a gRPC error, or why the connection failed."""
    if isinstance(error, urllib.error.HTTPError):
        body = error.read().decode(errors="replace")
        try:
            body = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        return f"HTTP {error.code}: {body}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot reach the server ({error.reason})"
    return f"gRPC {error.code().name}: {error.details()}"


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
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.rest and not args.rest.startswith(("http://", "https://")):
        parser.error(f"--rest needs an http:// or https:// URL, got {args.rest}")

    _, (images, labels) = load_digits_split()
    images, labels = images[: args.count], labels[: args.count]
    if args.write_request:
        with open(args.write_request, "w") as f:
            json.dump(serving_requests.rest_request_body(images), f)
        print(f"wrote {len(images)} images to {args.write_request}")
        return
    try:
        if args.rest:
            classes = predict_rest(args.rest, images)
        else:
            classes = predict_grpc(args.grpc, images)
    except server_errors() as error:
        sys.exit(f"{args.rest or args.grpc}: {server_error_text(error)}")
    print(f"classes: {classes.tolist()}")
    print(f"accuracy on {len(images)} held-out digits: "
          f"{np.mean(classes == labels):.4f}")


if __name__ == "__main__":
    main()
