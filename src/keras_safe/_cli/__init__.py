"""Text for the ``keras-safe`` command line: wrapping, progress bars, reports."""
