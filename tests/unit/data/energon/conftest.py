import pytest

from optica.data.energon.convert import convert_llava
from tests.unit.data.energon.helpers import make_data


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(data file, image folder, prepared shards of 4 samples each): made once per module."""
    root = tmp_path_factory.mktemp("llava")
    data, images = make_data(root)
    convert_llava(data, root / "shards", image_folder=images, shard_size=4)
    return data, images, root / "shards"
