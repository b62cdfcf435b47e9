"""``python -m keras_safe``: the ``keras-safe`` command line."""

from keras_safe.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
