"""What the tests (tests/) and the benchmark (bench/) share: the OpenBao dev server, waiting,
finished runs, and the pytest fixtures.

The fixture modules (`leak`, `harness`, `auth`, `cli`, `fault_proxy`, `forward_proxy`) are pytest
plugins, registered once by tests/conftest.py; tests import only helpers and types from here.
`bao`, `wait` and `paths` import nothing of pytest: bench/ uses them too.
"""
