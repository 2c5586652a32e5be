"""Imports of the packages that only some features need (the `serving`
and `onnx` extras), failing with what to install."""

import importlib


def import_optional(module, package, extra, needed_by):
    """Imports `module`, or raises an ImportError that names the feature,
    the missing package and how to install it.

    Args:
        module: The module to import, e.g. `"tf2onnx"`.
        package: The PyPI package that provides it.
        extra: The frn_keras extra that installs `package`.
        needed_by: What needs it, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{needed_by} needs the `{package}` package, which frn_keras "
            f'installs only with its `{extra}` extra: pip install '
            f'"frn_keras[{extra}]" (or pip install {package}). '
            f"Import of {module} failed: {error}"
        ) from error


def serving_api(name):
    """`tensorflow_serving.apis.<name>` (e.g. `"predict_pb2"`) from the
    `tensorflow-serving-api` package."""
    return import_optional(
        f"tensorflow_serving.apis.{name}", "tensorflow-serving-api",
        "serving", "Writing TF Serving requests and warm-up records")
