"""Pretrained image features: the weight mapping, the cache and bad input (robustlabels.features.image)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlabels.errors import InputError
from robustlabels.features import image

CIFAR10 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10_jpeg"


def shipped_state() -> dict[str, torch.Tensor]:
    spec = image.resolve_encoder()
    return torch.load(spec.weights, map_location="cpu", weights_only=True)


def test_every_shipped_tensor_lands_once_on_a_tensor_of_its_shape() -> None:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = shipped_state()
    renamed = image.efficientnet_pytorch_to_timm(state, model)
    assert len(renamed) == len(state) == len(model.state_dict()) == 296  # 247 + 49 BatchNorm step counters
    assert set(renamed) == set(model.state_dict())
    assert renamed["blocks.1.0.conv_pwl.weight"] is state["_blocks.1._project_conv.weight"]  # an inverted residual
    assert renamed["blocks.0.0.conv_pw.weight"] is state["_blocks.0._project_conv.weight"]  # the separable block
    assert renamed["blocks.6.0.bn3.bias"] is state["_blocks.15._bn2.bias"]  # the last of 16 flat blocks
    broken = dict(state)
    broken["_blocks.3._bn9.weight"] = broken.pop("_blocks.3._bn1.weight")
    with pytest.raises(InputError, match=re.escape("'_blocks.3._bn9.weight'")):
        image.efficientnet_pytorch_to_timm(broken, model)


@pytest.mark.skipif(not CIFAR10.is_dir(), reason=f"the CIFAR-10 images are not at {CIFAR10} (shared/data)")
def test_the_pretrained_features_beat_random_weights_on_cifar10() -> None:
    """A linear probe on 300 CIFAR-10 test images: a wrong mapping (or preprocessing) would land near the random
    network's score."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from robustlabels.data.readers import read_cifar10

    images, labels, _ = read_cifar10(CIFAR10, "test")
    rows = np.random.default_rng(0).choice(len(labels), 300, replace=False)
    images, labels = images[rows], labels[rows]
    spec = image.resolve_encoder()

    def probe(model: torch.nn.Module) -> float:
        with torch.inference_mode():
            feats = model(image.as_rgb_batch(images, 96, spec)).numpy()
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        return float(cross_val_score(LogisticRegression(max_iter=2000), feats, labels, cv=3).mean())

    import timm

    random_net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    pretrained, random = probe(image.load_encoder(spec)), probe(random_net)
    assert pretrained > 0.5 and pretrained > random + 0.2, (pretrained, random)  # 0.600 and 0.153 when written


def tiny_images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(n, 40, 40, 3), dtype=np.uint8)


def test_the_cache_hits_misses_and_rebuilds_a_corrupt_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = tiny_images()
    first = image.encode_images(images, resolution=64, cache_dir=tmp_path)
    assert first.shape == (6, 1280) and first.dtype == np.float32
    [cached] = list(tmp_path.glob("*.npy"))
    calls = []
    original = image.load_encoder
    monkeypatch.setattr(image, "load_encoder", lambda spec: calls.append(spec) or original(spec))
    assert np.array_equal(image.encode_images(images, resolution=64, cache_dir=tmp_path), first) and not calls
    image.encode_images(images, resolution=72, cache_dir=tmp_path)  # another resolution: a miss
    image.encode_images(images[::-1].copy(), resolution=64, cache_dir=tmp_path)  # other bytes: a miss
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npy"))) == 3
    cached.write_bytes(b"not an npy file")
    with pytest.warns(UserWarning, match="unreadable.*recomputing"):
        again = image.encode_images(images, resolution=64, cache_dir=tmp_path)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file reads cleanly
        image.encode_images(images, resolution=64, cache_dir=tmp_path)


def test_grey_images_are_encoded_as_rgb(tmp_path: Path) -> None:
    grey = tiny_images(3)[..., 0]
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    np.testing.assert_allclose(image.encode_images(grey, resolution=64, cache_dir=tmp_path),
                               image.encode_images(rgb, resolution=64, cache_dir=tmp_path), atol=1e-5)  # fmt: skip


def test_bad_encoders_and_weights_get_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--encoder 'resnet': unknown"):
        image.resolve_encoder("resnet")
    with pytest.raises(InputError, match="timm has no model 'no_such_net'"):
        image.resolve_encoder("timm:no_such_net", str(tmp_path / "w.pth"))
    with pytest.raises(InputError, match="needs its weights"):
        image.resolve_encoder("timm:resnet18")
    import timm

    wrong = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), wrong)
    with pytest.raises(InputError, match="does not fit tf_efficientnet_lite0") as err:
        image.encode_images(tiny_images(), weights=str(wrong), cache_dir=tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable PyTorch weights file"):
        image.encode_images(tiny_images(), weights=str(tmp_path / "junk.pth"), cache_dir=tmp_path)
    with pytest.raises(InputError, match="uint8"):
        image.encode_images(tiny_images().astype(np.float32), cache_dir=tmp_path)


def test_a_timm_model_with_its_own_weights_file(tmp_path: Path) -> None:
    import timm

    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    feats = image.encode_images(tiny_images(2), encoder="timm:resnet18", weights=str(weights), resolution=64,
                                cache_dir=tmp_path)  # fmt: skip
    assert feats.shape == (2, 512)


def test_the_cache_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    """A cached value computed from another cached value (catalog features from content-keyed embeddings) takes the
    folder's lock twice; a second flock on a new descriptor would wait for itself forever."""
    import threading

    from robustlabels.features.cache import cache_lock, cached_npz

    def nested() -> None:
        with cache_lock(tmp_path), cache_lock(tmp_path):
            pass
        cached_npz(tmp_path, "outer", lambda: {"x": image.encode_images(np.zeros((2, 8, 8), np.uint8), resolution=32,
                                                                        cache_dir=tmp_path)}, what="test")  # fmt: skip

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "nested cache locks deadlocked"
    assert {p.suffix for p in tmp_path.iterdir()} == {".npy", ".npz"}  # both levels cached


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_gpu_path_gives_the_cpu_features(tmp_path: Path) -> None:
    """On a GPU the resize runs there and batches are larger; the features must stay the CPU's (TF32 aside)."""
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    on_gpu = image.encode_images(images, resolution=64, cache_dir=tmp_path / "gpu")
    spec = image.resolve_encoder()
    with torch.inference_mode():
        on_cpu = image.load_encoder(spec).cpu()(image.as_rgb_batch(images, 64, spec)).numpy()  # (cached: moved back)
    cosine = (on_gpu * on_cpu).sum(1) / np.linalg.norm(on_gpu, axis=1) / np.linalg.norm(on_cpu, axis=1)
    assert cosine.min() > 0.999, cosine.min()
