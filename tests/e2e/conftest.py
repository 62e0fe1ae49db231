from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.backend import Backend, free_port_base


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    state_file: Path = tmp_path_factory.mktemp("devstack") / "state.json"
    with Backend(port_base=free_port_base(), state_file=state_file) as running:
        yield running
