"""handwriting: text to online handwriting with the network of Graves (2013).

Importing the package loads nothing heavy; import the submodules you need
(`handwriting.data`, `handwriting.model`, ...).
"""

__version__ = "0.1.0"
