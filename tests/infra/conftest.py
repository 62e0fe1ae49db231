from __future__ import annotations

import pytest

from tests.infra.harness import StackRun, run_stack


@pytest.fixture(params=["dev", "production"], scope="session")
def stack(request: pytest.FixtureRequest) -> StackRun:
    return run_stack(request.param)


@pytest.fixture(scope="session")
def dev() -> StackRun:
    return run_stack("dev")


@pytest.fixture(scope="session")
def production() -> StackRun:
    return run_stack("production")
