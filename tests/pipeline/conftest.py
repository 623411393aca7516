import pytest

from .browser import install_chromium


@pytest.fixture(scope="session")
def chromium():
    """Path of a headless Chromium; installed with apt-get when missing. Fails (does not skip) when unavailable."""
    path = install_chromium()
    assert path, "chromium is missing and apt-get could not install it"
    return path
