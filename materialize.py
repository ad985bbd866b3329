#!/usr/bin/env python3
"""bruin-materialize: Vault KV connection secrets → a checked, ephemeral bruin config → `bruin run`.

Usage: python materialize.py {render,check,exec} --help
"""

from __future__ import annotations

import os
import sys

# Run from anywhere (a container ENTRYPOINT, a checkout): the package sits beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bruin_materialize.cli import entrypoint  # noqa: E402

if __name__ == "__main__":
    entrypoint()
