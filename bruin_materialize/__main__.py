"""`python -m bruin_materialize`: the same program as the `bruin-materialize` command."""

from bruin_materialize.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
