"""What TF Serving does with a request, in Python, for tests without a
server: turn a REST body or a gRPC PredictRequest into the signature's input
tensors (with the signature's dtype), and run the signature."""

import json

import numpy as np
import tensorflow as tf


def inputs_from_rest_body(body, signature):
    """Parses a `:predict` JSON body (row or column format) as the server
    does, converting values to the signature's input dtypes."""
    body = json.loads(json.dumps(body))  # exactly what goes over the wire
    specs = signature.structured_input_signature[1]
    if "instances" in body:
        instances = body["instances"]
        if isinstance(instances[0], dict):
            columns = {k: [inst[k] for inst in instances] for k in specs}
        else:
            (name,) = specs
            columns = {name: instances}
    else:
        inputs = body["inputs"]
        if not isinstance(inputs, dict):
            (name,) = specs
            inputs = {name: inputs}
        columns = inputs
    return {
        name: tf.constant(np.asarray(columns[name]), dtype=spec.dtype)
        for name, spec in specs.items()
    }


def inputs_from_predict_request(request):
    """The tensors of a gRPC `PredictRequest`, as the server decodes them."""
    return {
        name: tf.constant(tf.make_ndarray(proto))
        for name, proto in request.inputs.items()
    }


def run(signature, inputs):
    return {k: v.numpy() for k, v in signature(**inputs).items()}


def rest_row_response(outputs):
    """The server's JSON answer to a row-format request: one object per
    instance, named outputs as keys."""
    names = sorted(outputs)
    count = len(outputs[names[0]])
    return {"predictions": [
        {name: outputs[name][i].tolist() for name in names}
        for i in range(count)
    ]}
