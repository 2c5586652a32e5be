"""TFLite and ONNX conversions of a serving SavedModel (optional extras).

Both start from the SavedModel written by `frn_keras.export`, so they keep
its contract: input `images` (uint8 `[batch, H, W, 3]`), outputs
`probabilities` and `classes`. FRN and TLU are plain math, so both
conversions use built-in operators only.
"""

import tensorflow as tf

from frn_keras.serving_requests import INPUT_NAME
from frn_keras.serving_requests import SIGNATURE_NAME


def to_tflite(saved_model_dir, output_path):
    """Converts to a `.tflite` file with TFLite built-in ops only.

    Returns:
        `output_path`.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[SIGNATURE_NAME]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with open(output_path, "wb") as f:
        f.write(converter.convert())
    return output_path


def to_onnx(saved_model_dir, output_path, opset=17):
    """Converts to an `.onnx` file with `tf2onnx` (`pip install
    "frn_keras[onnx]"`).

    Returns:
        `output_path`.
    """
    import tf2onnx

    loaded = tf.saved_model.load(saved_model_dir)  # keeps the variables alive
    signature = loaded.signatures[SIGNATURE_NAME]
    spec = signature.structured_input_signature[1][INPUT_NAME]
    tf2onnx.convert.from_function(
        tf.function(lambda images: signature(**{INPUT_NAME: images})),
        input_signature=[tf.TensorSpec(spec.shape, spec.dtype, INPUT_NAME)],
        opset=opset,
        output_path=output_path,
    )
    return output_path
