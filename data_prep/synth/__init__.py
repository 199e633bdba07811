"""The embedded corpus: handwriting generated from single-line fonts in the IAM-OnDB layout.

`python -m data_prep synth DIR` (see `cli`) writes DIR like IAM-OnDB, so `python -m data_prep
iam-ondb DIR OUT` reads it as it reads the real data. Modules: `fonts` (glyphs of the Hershey
and EMS faces), `text` (word list and sentence patterns), `style` (per-writer style), `pen`
(glyph paths to timed pen trajectories), `layout` (the folder), `preview` (a picture of it).
"""
