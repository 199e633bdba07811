"""`python -m handwriting write "text" -o out.svg`: see `handwriting.cli`."""

import sys

from handwriting import startup

# Before the CLI imports TensorFlow: keeps its no-GPU notices off stderr.
startup.import_tensorflow()

from handwriting.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
