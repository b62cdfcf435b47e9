"""The ``.keras`` file as bytes: reader, atomic writer, zip layout, manifest,
digests and size limits. No model is built here."""
