import os
import sys

import pytest

# The executor tests share their trial runners with the core's (tests/core/executor_helpers.py);
# Ray's workers import them by name, so they get the same path.
HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core")
if HELPERS not in sys.path:
    sys.path.insert(0, HELPERS)


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray with 2 CPUs for the whole session (starting one takes seconds)."""
    import ray

    path = os.pathsep.join([HELPERS, os.path.dirname(os.path.abspath(__file__))])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}},
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
