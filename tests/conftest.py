import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "helpers"))


@pytest.fixture(autouse=True, scope="session")
def _private_verdict_cache(tmp_path_factory):
    """The CLI keeps a verdict cache by default: keep the tests' out of the user's home."""
    previous = os.environ.get("MALHUG_CACHE_DIR")
    os.environ["MALHUG_CACHE_DIR"] = str(tmp_path_factory.mktemp("verdict-cache"))
    yield
    if previous is None:
        os.environ.pop("MALHUG_CACHE_DIR", None)
    else:
        os.environ["MALHUG_CACHE_DIR"] = previous
