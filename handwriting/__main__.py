"""`python -m handwriting write "text" -o out.svg`: see `handwriting.cli`."""

import sys

from handwriting.cli import main

if __name__ == "__main__":
    sys.exit(main())
