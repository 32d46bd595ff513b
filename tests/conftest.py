import pytest


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Each test stores files in its own folder, so no test sees another's blobs."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ASSAY_KEY_DIR = tmp_path / "keys"
