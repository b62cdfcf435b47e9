"""How a user's class becomes a config: base classes, ``__init__`` signatures,
the value codec's handlers, the registry, config versions and migrations."""
