"""bruin-materialize: every bruin connection secret from a Vault KV engine into one checked bruin config."""

# The one place the version is written: pyproject reads it (tool.setuptools.dynamic), `--version`
# prints it, the rendered file's header records it, and every Vault request sends it as User-Agent.
__version__ = "0.1.0"
