"""Every check on untrusted input: the references in a config, the allowlist
they must pass, the values around them, and the JSON and HDF5 bounds."""
