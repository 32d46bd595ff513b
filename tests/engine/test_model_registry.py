"""The model registry: checkpoints pinned by sha256, loaded only when they match their card."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from reconstruction.engine import model_registry
from reconstruction.engine.cli import main
from reconstruction.engine.errors import CheckpointRejected, EngineError, UnknownModel
from reconstruction.engine.model_registry import (
    ModelCard,
    checkpoint_reference,
    find_model,
    list_models,
    load_checkpoint,
    register_checkpoint,
    semver_key,
    verify,
)

DATA = {"description": "64 renders of 8 procedural meshes", "digest": "ab" * 32}


@pytest.fixture
def model_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "weights"
    monkeypatch.setenv("ASSAY_MODEL_DIR", str(directory))
    return directory


@pytest.fixture
def state_dict_file(tmp_path) -> Path:
    path = tmp_path / "trained.pt"
    torch.save({"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "layer.bias": torch.zeros(2)}, path)
    return path


def _register(path: Path, version: str = "1.0.0", name: str = "tiny-unet") -> ModelCard:
    return register_checkpoint(
        path,
        name=name,
        version=version,
        architecture="unet-2d",
        training_config={"steps": 10, "lr": 1e-3},
        training_data=DATA,
        metrics={"val_loss": 0.25},
        licence="Apache-2.0",
        description="A tiny test network.",
    )


def test_register_find_and_load_round_trip(model_dir, state_dict_file):
    card = _register(state_dict_file)

    assert card.file == "tiny-unet-1.0.0.pt"
    assert (model_dir / card.file).read_bytes() == state_dict_file.read_bytes()
    assert card.sha256 == model_registry.sha256_file(state_dict_file)
    assert card.size_bytes == state_dict_file.stat().st_size
    assert list_models() == [card]
    assert find_model("tiny-unet") == card
    assert find_model("tiny-unet", sha256=card.sha256.upper()) == card
    loaded = load_checkpoint(find_model("tiny-unet", version="1.0.0"))
    assert torch.equal(loaded["layer.weight"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert ModelCard.from_dict(json.loads((model_dir / "registry.json").read_text())[0]) == card
    assert checkpoint_reference(card) == {
        "name": "tiny-unet@1.0.0",
        "sha256": card.sha256,
        "uri": "assay:model/tiny-unet@1.0.0",
    }


def test_registering_the_same_version_again_replaces_its_card(model_dir, state_dict_file, tmp_path):
    first = _register(state_dict_file)
    other = tmp_path / "retrained.pt"
    torch.save({"layer.weight": torch.ones(2, 3)}, other)
    second = _register(other)

    assert second.sha256 != first.sha256
    assert list_models() == [second]
    assert torch.equal(load_checkpoint(second)["layer.weight"], torch.ones(2, 3))
    assert sorted(p.name for p in model_dir.iterdir()) == ["registry.json", "tiny-unet-1.0.0.pt"]


def test_newest_semantic_version_is_found_when_none_is_asked_for(model_dir, state_dict_file):
    for version in ["1.9.0", "1.10.0", "1.10.1-rc.1", "0.20.0"]:
        _register(state_dict_file, version=version)

    assert find_model("tiny-unet").version == "1.10.1-rc.1"
    assert [c.version for c in list_models()] == ["0.20.0", "1.9.0", "1.10.0", "1.10.1-rc.1"]
    assert semver_key("1.10.1") > semver_key("1.10.1-rc.1") > semver_key("1.10.1-beta") > semver_key("1.10.0")
    assert semver_key("1.0.0-rc.2") < semver_key("1.0.0-rc.10")


def test_a_flipped_byte_is_refused(model_dir, state_dict_file):
    card = _register(state_dict_file)
    path = model_dir / card.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(CheckpointRejected) as caught:
        load_checkpoint(card)
    assert caught.value.code == "checkpoint_rejected"
    actual = model_registry.sha256_file(path)
    assert caught.value.message == (
        f"Checkpoint tiny-unet@1.0.0 at {path.resolve()} does not match its model card: "
        f"expected sha256 {card.sha256}, found {actual}."
    )


def test_a_missing_file_is_refused(model_dir, state_dict_file):
    card = _register(state_dict_file)
    (model_dir / card.file).unlink()

    with pytest.raises(
        CheckpointRejected, match=r"Checkpoint tiny-unet@1.0.0 is missing: .*tiny-unet-1.0.0.pt does not exist"
    ):
        verify(card)


def test_a_file_that_is_not_a_checkpoint_is_refused_even_with_a_matching_card(model_dir, state_dict_file):
    card = _register(state_dict_file)
    path = model_dir / card.file
    path.write_bytes(b"not a torch checkpoint, just bytes\n")
    forged = ModelCard.from_dict({**card.to_dict(), "sha256": model_registry.sha256_file(path)})

    assert verify(forged) == path.resolve()
    with pytest.raises(CheckpointRejected, match="is not a loadable weights-only checkpoint"):
        load_checkpoint(forged)


def test_a_pickled_object_is_refused_at_registration(model_dir, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"callback": shutil.rmtree}, path)  # weights_only loading must not resolve arbitrary globals

    with pytest.raises(CheckpointRejected, match="is not a loadable weights-only checkpoint"):
        _register(path)
    assert list_models() == []


def test_a_card_pointing_outside_the_model_directory_is_refused(model_dir, state_dict_file):
    card = _register(state_dict_file)

    with pytest.raises(EngineError, match="must be a path inside the model directory"):
        ModelCard.from_dict({**card.to_dict(), "file": "../elsewhere.pt"})


def test_an_unknown_name_or_version_raises_unknown_model(model_dir, state_dict_file):
    with pytest.raises(UnknownModel, match=r"No model tiny-unet in .*registry.json \(registered: none\)"):
        find_model("tiny-unet")
    _register(state_dict_file)

    with pytest.raises(UnknownModel) as caught:
        find_model("tiny-unet", version="2.0.0")
    assert caught.value.code == "unknown_model"
    assert "registered: tiny-unet@1.0.0" in caught.value.message
    with pytest.raises(UnknownModel):
        find_model("tiny-unet", sha256="0" * 64)


def test_a_card_without_a_training_data_digest_is_refused(model_dir, state_dict_file):
    with pytest.raises(EngineError, match="training_data needs a 'description' and a 'digest'"):
        register_checkpoint(
            state_dict_file,
            name="tiny-unet",
            version="1.0.0",
            architecture="unet-2d",
            training_config={},
            training_data={"description": "no digest"},
            metrics={},
        )
    with pytest.raises(EngineError, match="is not a semantic version"):
        register_checkpoint(
            state_dict_file,
            name="tiny-unet",
            version="v1",
            architecture="unet-2d",
            training_config={},
            training_data=DATA,
            metrics={},
        )
    assert list_models() == []


def test_the_shipped_manifest_loads(monkeypatch):
    monkeypatch.delenv("ASSAY_MODEL_DIR", raising=False)

    assert model_registry.model_dir() == model_registry.DEFAULT_MODEL_DIR
    assert all(isinstance(c, ModelCard) for c in list_models())


def test_cli_lists_and_verifies_models(model_dir, state_dict_file, capsys):
    card = _register(state_dict_file)

    assert main(["models"]) == 0
    assert f"tiny-unet 1.0.0: unet-2d; sha256 {card.sha256[:12]}" in capsys.readouterr().out
    assert main(["models", "--verify"]) == 0
    assert "1 checkpoint(s) verified." in capsys.readouterr().out
    (model_dir / card.file).write_bytes(b"changed")

    assert main(["models", "--verify"]) == 1
    assert "does not match its model card: expected sha256" in capsys.readouterr().err
