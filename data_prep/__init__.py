"""Offline data preparation: IAM-OnDB (or the embedded corpus) to sharded TFRecords."""
