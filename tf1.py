"""TensorFlow as this project uses it: TF1 graph mode (`tensorflow.compat.v1` with the v2 behaviour disabled) on
current TensorFlow. Every module takes `tf` from here, so the import and its settings happen once, in one place.

config.tensorflow_environment sets TF_CPP_MIN_LOG_LEVEL before this is first imported, unless --verbose is given.
"""
import os


def _import_tensorflow(quiet):
    """TF 2.21 writes start-up lines to stderr before its log settings apply; a quiet import hides just those."""
    if not quiet:
        import tensorflow.compat.v1 as tf
        return tf
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow.compat.v1 as tf
        tf.get_logger().setLevel("ERROR")  # before disable_v2_behavior, which warns about resource variables
        return tf
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


tf = _import_tensorflow(quiet=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") >= "2")
tf.disable_v2_behavior()
