"""TensorFlow started by an entry point without its native start-up notices.

TensorFlow 2.21's native code writes lines to stderr before its log level applies, so
`TF_CPP_MIN_LOG_LEVEL` cannot hide them; on a machine without a GPU they read

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

and a user reads "error". `import_tensorflow` imports TensorFlow and initialises its devices
with file descriptor 2 sent to a temporary file, then writes back every line but these
notices. Entry points call it before anything imports TensorFlow; the library never does (it
has no side effects on import). `TF_CPP_MIN_LOG_LEVEL` (default 2 here) at 0 or 1 asks for
TensorFlow's notices and turns the filter off.
"""

import contextlib
import os
import re
import sys
import tempfile

# TensorFlow's C++ log level in the entry points: warnings and errors only.
DEFAULT_LOG_LEVEL = "2"
# The notices of a machine without a GPU (or without its driver), dropped from stderr.
NO_GPU_NOTICES = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called .*"),
    re.compile(r"[IWE]\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers .*"),
    re.compile(r"[IWE]\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit: .*"),
)


def import_tensorflow():
    """Imports TensorFlow and lists its devices, keeping the no-GPU notices off stderr.

    Returns the `tensorflow` module.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    if level in ("0", "1") or "tensorflow" in sys.modules:  # asked for notices, or too late
        import tensorflow as tf

        return tf
    with _stderr_filtered(NO_GPU_NOTICES):
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe runs here
    return tf


@contextlib.contextmanager
def _stderr_filtered(patterns):
    """Sends file descriptor 2 to a temporary file; on exit writes back the lines that match
    none of `patterns`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(p.fullmatch(line.rstrip("\r\n")) for p in patterns):
                    sys.stderr.write(line)
            sys.stderr.flush()
