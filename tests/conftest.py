"""Shared fixtures: a tiny synthetic MARS-layout dataset prepared with the real prep tool."""
import pytest


@pytest.fixture(scope="session")
def tiny_mars(tmp_path_factory):
    """12 identities (6 train, 6 test), prepared LMDB + index; a folder path."""
    from reid.datasets.synthetic import synthetic_mars
    return synthetic_mars(str(tmp_path_factory.mktemp("tiny_mars")), identities=12, seed=3)
