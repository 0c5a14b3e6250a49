import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".venv", "numba-cache"))


# ---- real tiny artifacts (engineer B; see tests/builders.py) ------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A directory with a tiny real corpus (corpus/) and a fairly trained tiny pair (models/<act_fn>/)."""
    from tests.builders import build_tiny_models

    root = tmp_path_factory.mktemp("tiny")
    build_tiny_models(root)
    return root


@pytest.fixture(scope="session")
def tiny_stores(tiny_root):
    """{"gelu": Path, "solu_ln": Path}: recorded (~20k tokens) and indexed stores, built once per session."""
    from tests.builders import build_tiny_store

    return {a: build_tiny_store(tiny_root, a) for a in ("gelu", "solu_ln")}


@pytest.fixture(scope="module")
def gelu(tiny_stores):
    """The tiny GeLU store, opened."""
    from store.reader import Store

    return Store.open(tiny_stores["gelu"])


@pytest.fixture(scope="module")
def solu(tiny_stores):
    """The tiny SoLU-LN store, opened."""
    from store.reader import Store

    return Store.open(tiny_stores["solu_ln"])
