"""8: weights come over https only; every download's sha256 is stored beside it and checked on reuse; a pinned hash
(full, or a published prefix) is enforced on the release download; the load report and the record say "unpinned"
where nothing is pinned. No network: torch.hub's downloader is replaced by a copy from a local file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from methods import CheckpointError, build_encoder, get_adapter
from methods import weights as w
from methods.weights import pin_status, resolve_weights, sha256_file
from tests.methods._official import shrink

URL = "https://example.org/weights/w.pth"


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A torch.hub cache in ``tmp_path`` whose 'downloads' copy ``served['file']`` and are counted."""
    served: dict = {"file": None, "calls": 0}

    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        served["calls"] += 1
        Path(dst).write_bytes(Path(served["file"]).read_bytes())

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    return served


def _blob(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("url", ["http://example.org/w.pth", "HTTP://example.org/w.pth", "ftp://example.org/w.pth"])
def test_only_https(url: str, hub: dict) -> None:
    with pytest.raises(CheckpointError, match="refusing plain http|unsupported URL scheme"):
        resolve_weights(url)
    assert hub["calls"] == 0


def test_the_sha256_is_stored_beside_the_download_and_checked_on_reuse(tmp_path: Path, hub: dict) -> None:
    hub["file"] = _blob(tmp_path / "src.bin", b"weights v1")
    path = resolve_weights(URL)
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.read_text().strip() == hashlib.sha256(b"weights v1").hexdigest()
    assert resolve_weights(URL) == path and hub["calls"] == 1  # reused, not downloaded again
    path.write_bytes(b"weights v2, swapped in the cache")
    with pytest.raises(CheckpointError, match="cached download changed since it was downloaded"):
        resolve_weights(URL)
    sidecar.unlink()  # a cached file without its recorded sha256 is not trusted: downloaded again
    assert resolve_weights(URL).read_bytes() == b"weights v1" and hub["calls"] == 2


def test_a_download_that_misses_its_pin_is_never_cached(tmp_path: Path, hub: dict) -> None:
    hub["file"] = _blob(tmp_path / "src.bin", b"not the release")
    with pytest.raises(CheckpointError, match=r"refusing the download: its sha256 .* is not the pinned"):
        resolve_weights(URL, expected_sha256="ab" * 32)
    with pytest.raises(CheckpointError, match=r"md5 .* is not the published prefix 8cad7c"):
        resolve_weights(URL, prefix="md5:8cad7c")
    assert not list((tmp_path / "hub").rglob("*w.pth*"))  # no file, no sidecar, no partial


def test_pin_status_full_prefix_and_unpinned(tmp_path: Path) -> None:
    f = _blob(tmp_path / "f.bin", b"abc")
    sha, md5 = hashlib.sha256(b"abc").hexdigest(), hashlib.md5(b"abc").hexdigest()
    assert pin_status(f, sha, sha, None, enforce=True) == "sha256 pinned, verified"
    assert pin_status(f, sha, None, f"sha256:{sha[:8]}", enforce=True) == (
        f"sha256 prefix {sha[:8]} published (8 of 64 hex digits), verified"
    )
    assert pin_status(f, sha, None, f"md5:{md5[:6]}", enforce=True).startswith(f"md5 prefix {md5[:6]} published")
    assert pin_status(f, sha, None, None, enforce=True) == "unpinned"
    other = pin_status(f, sha, "0" * 64, None, enforce=False)  # a local file of another origin: said, not refused
    assert other.startswith("not the authors' release file")


def test_hub_blobs_are_checked_against_their_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    data = b"hub weights"
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    blob = _blob(blobs / hashlib.sha256(data).hexdigest(), data)
    snap = tmp_path / "snapshots" / "w.pth"
    snap.parent.mkdir()
    snap.symlink_to(blob)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: str(snap))
    assert resolve_weights("hf-hub:o/r/w.pth") == snap
    blob.write_bytes(b"changed")
    w._SHA_CACHE.clear()
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        resolve_weights("hf-hub:o/r/w.pth")


# ------------------------------------------------------------------------------------------------ report + record
def _tiny_dino_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shrink(monkeypatch, "dino", "vits16", embed_dim=64, depth=2, num_heads=4, img_size=32)
    enc = build_encoder("dino:vits16", weights="random")
    path = tmp_path / "dino_tiny.pth"
    torch.save({k.removeprefix("model."): t for k, t in enc.state_dict().items()}, path)
    return path


def test_the_load_report_says_unpinned_or_how_the_file_was_verified(
    tmp_path: Path, hub: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _tiny_dino_file(tmp_path, monkeypatch)
    rep = build_encoder("dino:vits16", weights=path).identity.load_report
    assert rep is not None and rep.integrity == "unpinned"
    # The variant's own (pinned) download: a published prefix is enforced and reported.
    adapter = get_adapter("dino")
    v = adapter.variant("vits16")
    hub["file"] = path
    pinned = dataclasses.replace(v, weights_url=URL, digest_prefix=f"sha256:{sha256_file(path)[:8]}")
    monkeypatch.setattr(type(adapter), "variants", (pinned, *adapter.variants[1:]))
    rep = build_encoder("dino:vits16").identity.load_report
    assert rep is not None and rep.integrity is not None
    assert rep.integrity.startswith("sha256 prefix") and rep.integrity.endswith("verified")
    wrong = dataclasses.replace(pinned, weights_url=URL + "?2", digest_prefix="sha256:00000000")
    monkeypatch.setattr(type(adapter), "variants", (wrong, *adapter.variants[1:]))
    with pytest.raises(CheckpointError, match="is not the published prefix 00000000"):
        build_encoder("dino:vits16")


def test_the_record_carries_integrity_and_the_resample_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.cli import main
    from benchmarks.data.imagefolder import synth_imagefolder

    path = _tiny_dino_file(tmp_path, monkeypatch)
    sd = torch.load(path)
    sd["pos_embed"] = torch.randn(1, 1 + 3 * 3, 64)  # a 3x3 table into the 2x2 model
    torch.save(sd, path)
    data = synth_imagefolder(tmp_path / "data", n_classes=2, n_train=12, n_val=2, size=32)
    out = tmp_path / "results"
    args = ["run", "--method", "dino:vits16", "--task", "knn", "--data", str(data), "--weights", str(path)]
    args += ["--smoke", "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main(args) == 1  # a grid the method does not declare
    assert not out.exists()
    assert main([*args, "--resample-pos-embed"]) == 0
    (record,) = out.rglob("*.json")
    rep = json.loads(record.read_text())["weights"]["load_report"]
    assert rep["integrity"] == "unpinned" and rep["resample_pos_embed"] is True and rep["non_finite"] == 0
    assert any("--resample-pos-embed" in line for line in rep["converted"])
