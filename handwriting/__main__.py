"""`python -m handwriting write "text" -o out.svg`: see `handwriting.cli`."""

import os
import sys

# TensorFlow's start-up chatter hides the messages that matter; TF_CPP_MIN_LOG_LEVEL=0 shows it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from handwriting.cli import main

if __name__ == "__main__":
    sys.exit(main())
