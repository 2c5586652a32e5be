"""TFLite and ONNX conversions of a serving SavedModel (optional extras).

Both start from the SavedModel written by `frn_keras.export`, so they keep
its contract: input `images` (uint8 `[batch, H, W, 3]`), outputs
`probabilities` and `classes`. FRN and TLU are plain math, so both
conversions use built-in operators only: the one TensorFlow op they lack,
`EuclideanNorm` (FRN's one-pass sum of squares in a graph not compiled by
XLA), is first rewritten as `sqrt(sum(square(x)))` by `portable_copy`.
"""

import tempfile

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from frn_keras._optional import import_optional
from frn_keras.serving_requests import INPUT_NAME
from frn_keras.serving_requests import SIGNATURE_NAME


def to_tflite(saved_model_dir, output_path):
    """Converts to a `.tflite` file with TFLite built-in ops only.

    Args:
        saved_model_dir: A version folder written by
            `frn_keras.export.export_for_serving`.
        output_path: The `.tflite` file to write.

    Returns:
        `output_path`.

    Raises:
        ConverterError: TFLite's converter error (not exported under
            `tf.lite`), naming the op, if the model needs an op that has no
            TFLite builtin (it would need the Flex delegate).
    """
    with tempfile.TemporaryDirectory() as portable_dir:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            portable_copy(saved_model_dir, portable_dir),
            signature_keys=[SIGNATURE_NAME],
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        with open(output_path, "wb") as f:
            f.write(converter.convert())
    return output_path


def to_onnx(saved_model_dir, output_path, opset=17):
    """Converts to an `.onnx` file with `tf2onnx` (`pip install
    "frn_keras[onnx]"`).

    Args:
        saved_model_dir: A version folder written by
            `frn_keras.export.export_for_serving`.
        output_path: The `.onnx` file to write.
        opset: The ONNX opset to target. Defaults to `17`.

    Returns:
        `output_path`.

    Raises:
        ImportError: If `tf2onnx` is not installed.
    """
    tf2onnx = import_optional("tf2onnx", "tf2onnx", "onnx",
                              "Converting to ONNX")
    with tempfile.TemporaryDirectory() as portable_dir:
        loaded = tf.saved_model.load(
            portable_copy(saved_model_dir, portable_dir))
        signature = loaded.signatures[SIGNATURE_NAME]
        spec = signature.structured_input_signature[1][INPUT_NAME]
        tf2onnx.convert.from_function(
            tf.function(lambda images: signature(**{INPUT_NAME: images})),
            input_signature=[tf.TensorSpec(spec.shape, spec.dtype,
                                           INPUT_NAME)],
            opset=opset,
            output_path=output_path,
        )
    return output_path


def portable_copy(saved_model_dir, output_dir):
    """Writes the `serving_default` signature of a serving SavedModel to
    `output_dir`, its variables frozen to constants and each
    `EuclideanNorm` replaced by `sqrt(sum(square(x)))`, the same value.

    Args:
        saved_model_dir: A version folder written by
            `frn_keras.export.export_for_serving`.
        output_dir: Where to write the copy.

    Returns:
        `output_dir`.
    """
    loaded = tf.saved_model.load(saved_model_dir)  # keeps variables alive
    signature = loaded.signatures[SIGNATURE_NAME]
    frozen = convert_variables_to_constants_v2(signature)
    graph_def = frozen.graph.as_graph_def()
    nodes = []
    for node in graph_def.node:
        nodes.extend(_sum_of_squares_nodes(node)
                     if node.op == "EuclideanNorm" else [node])
    del graph_def.node[:]
    graph_def.node.extend(nodes)

    graph_fn = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    outputs = tf.nest.pack_sequence_as(signature.structured_outputs,
                                       frozen.outputs)
    forward = graph_fn.prune(
        graph_fn.graph.get_tensor_by_name(frozen.inputs[0].name),
        {key: graph_fn.graph.get_tensor_by_name(tensor.name)
         for key, tensor in outputs.items()})
    spec = signature.structured_input_signature[1][INPUT_NAME]

    @tf.function(input_signature=[
        tf.TensorSpec(spec.shape, spec.dtype, INPUT_NAME)])
    def serve(images):
        return forward(images)

    module = tf.Module()
    module.serve = serve
    # The frozen graph keeps the layers' custom-gradient markers, whose
    # gradients cannot be saved (nor are they needed to serve).
    tf.saved_model.save(
        module, output_dir, signatures={SIGNATURE_NAME: serve},
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    return output_dir


def _sum_of_squares_nodes(norm):
    """`Square`, `Sum`, `Sqrt` nodes computing the `EuclideanNorm` node
    `norm`; the last keeps its name, so its consumers read it unchanged."""
    x, axes = norm.input[0], norm.input[1]
    square = tf.compat.v1.NodeDef(name=f"{norm.name}/square", op="Square",
                                  input=[x], device=norm.device)
    square.attr["T"].CopyFrom(norm.attr["T"])
    total = tf.compat.v1.NodeDef(name=f"{norm.name}/sum", op="Sum",
                                 input=[square.name, axes], device=norm.device)
    for key in ("T", "Tidx", "keep_dims"):
        total.attr[key].CopyFrom(norm.attr[key])
    root = tf.compat.v1.NodeDef(name=norm.name, op="Sqrt", input=[total.name],
                                device=norm.device)
    root.attr["T"].CopyFrom(norm.attr["T"])
    return [square, total, root]
