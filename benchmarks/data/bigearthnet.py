"""BigEarthNet-MM (Sentinel-1 + Sentinel-2 patches, multi-label) as torchgeo 0.8.1 reads it, checked; and a synthesizer.

Layout v1 (``torchgeo.datasets.BigEarthNet``; the data DINO-MM used)::

    root/bigearthnet-{train,val,test}.csv        one "<S2 patch>,<S1 patch>" pair a line, no header
    root/BigEarthNet-v1.0/<S2 patch>/<S2 patch>_{B01..B09,B11,B12,B8A}.tif  + <S2 patch>_labels_metadata.json
    root/BigEarthNet-S1-v1.0/<S1 patch>/<S1 patch>_{VH,VV}.tif              + <S1 patch>_labels_metadata.json

Layout v2 (``torchgeo.datasets.BigEarthNetV2``)::

    root/metadata.parquet                        patch_id, s1_name, split (train / validation / test), labels, ...
    root/BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_<band>.tif    tile = patch_id less its last two "_" fields
    root/BigEarthNet-S1/<scene>/<s1_name>/<s1_name>_{VH,VV}.tif     scene = s1_name less its last three
    root/Reference_Maps/<tile>/<patch_id>/<patch_id>_reference_map.tif

Bands keep their native sizes: 120x120 px at 10 m (B02, B03, B04, B08, VH, VV), 60x60 at 20 m (B05, B06, B07, B8A,
B11, B12), 20x20 at 60 m (B01, B09); S2 values are uint16 reflectances, S1 float32 backscatter in dB.

What torchgeo gives: the split lists and the S1/S2 pairing (v1 ``folders`` from the split CSVs, v2 ``metadata_df``),
the labels (``_load_target``: v1 maps the 43 CLC names to the 19-class nomenclature with its ``label_converter``;
the S1 JSON is read when S1 is loaded, else the S2 one), the class lists, the band order (``_load_paths``: S1 sorted
by name — VH, VV — then S2 sorted with B8A after B08) and the resampling (every band read bilinearly at 120x120).
Pixels: torchgeo reads every band with ``out_dtype='int32'``, which rounds S1's float32 dB values to whole dB (the
cast torchgeo removed from SEN12MS in torchgeo issue #500); :class:`PatchSource` reads the same files, in the same
order, with the same resampling, as float32, and checks each band's native size.

Checked before anything is computed, each a one-line :class:`~methods.errors.DataError` naming the patch: a missing
split file or patch folder, a split line naming an absent S2 patch, an S2 patch whose S1 pair is absent, a missing
or unexpected band file, a label outside the nomenclature. A band of the wrong size is found when it is read
(feature extraction, before any head trains): checking 7 million GeoTIFF headers up front would cost as much as
reading them.

torchgeo and rasterio are imported inside functions only: the default install imports this module without them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.probe.data import LabelledSplit
from methods.base import BandStretch
from methods.errors import DataError, VitbenchError

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")  # torchgeo's order
S1_BANDS = ("VH", "VV")  # sorted by file name, as torchgeo globs them
SENSOR_BANDS = {"s1": S1_BANDS, "s2": S2_BANDS}
NATIVE_SIZE = {b: 120 for b in ("B02", "B03", "B04", "B08", "VH", "VV")}
NATIVE_SIZE.update({b: 60 for b in ("B05", "B06", "B07", "B8A", "B11", "B12")})
NATIVE_SIZE.update({"B01": 20, "B09": 20})
IMAGE_SIZE = 120  # torchgeo resamples every band to 120x120
MODALITIES = ("s1", "s2", "s1s2")
_TORCHGEO_BANDS = {"s1": "s1", "s2": "s2", "s1s2": "all"}
V1_DIRS = {"s2": "BigEarthNet-v1.0", "s1": "BigEarthNet-S1-v1.0"}
V2_DIRS = {"s2": "BigEarthNet-S2", "s1": "BigEarthNet-S1", "maps": "Reference_Maps"}
V2_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # torchgeo's BigEarthNetV2.split_map
SPLITS = ("train", "val", "test")

# Raw-value statistics of BigEarthNet, per band: S2 from SeCo's BAND_STATS (zhu-xlab/DINO-MM
# datasets/BigEarthNet/bigearthnet_dataset_seco.py), S1 in dB from DINO-MM's MEAN_S1 / STD_S1
# (bigearthnet_dataset_seco_lmdb_B14.py). The stated scaling of the RGB adaptations (:func:`stretch_for`).
BAND_MEAN = dict(
    zip(
        (*S2_BANDS, *S1_BANDS),
        (340.76769064, 429.9430203, 614.21682446, 590.23569706, 950.68368468, 1792.46290469, 2075.46795189,
         2218.94553375, 2266.46036911, 2246.0605464, 1594.42694882, 1009.32729131, -19.22, -12.59),
    )
)  # fmt: skip
BAND_STD = dict(
    zip(
        (*S2_BANDS, *S1_BANDS),
        (554.81258967, 572.41639287, 582.87945694, 675.88746967, 729.89827633, 1096.01480586, 1273.45393088,
         1365.45589904, 1356.13789355, 1302.3292881, 1079.19066363, 818.86747235, 5.42, 5.04),
    )
)  # fmt: skip


def stretch_for(bands: Sequence[str]) -> BandStretch:
    """The scaling SeCo and DINO-MM apply to BigEarthNet, for ``bands``: uint8 from mean +- 2 std, S1 first clipped
    to its per-image 1 / 99 % quantiles, then / 255."""
    return BandStretch(
        mean=tuple(BAND_MEAN[b] for b in bands),
        std=tuple(BAND_STD[b] for b in bands),
        clip_bands=tuple(b for b in bands if b in S1_BANDS),
    )


def sensors(modality: str) -> tuple[str, ...]:
    """The sensors a modality reads, in torchgeo's stacking order (S1 first)."""
    if modality not in MODALITIES:
        raise VitbenchError(f"modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    return tuple(s for s in ("s1", "s2") if s in modality)


def modality_bands(modality: str) -> tuple[str, ...]:
    """Band names of a modality in torchgeo's order (S1 then S2)."""
    return tuple(b for s in sensors(modality) for b in SENSOR_BANDS[s])


def _torchgeo() -> Any:
    try:
        import torchgeo.datasets as tgd
    except ImportError as err:
        raise VitbenchError(
            f"BigEarthNet is read through torchgeo, which is not installed ({err}); pip install 'vitbench[geo]'"
        ) from None
    return tgd


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class PatchSource:
    """Reads BigEarthNet samples: sample ``i`` is the band files of its patch folders (one per sensor, relative to
    ``root``), stacked in ``bands`` order, each read bilinearly at 120x120 as float32 (torchgeo's resampling,
    without its int32 cast). ``labels[i]`` is the label file torchgeo reads for it ("" when a shared table holds
    them). Picklable: DataLoader workers read through it."""

    root: Path
    folders: tuple[tuple[str, ...], ...]  # per sample, one folder per sensor in ``sensors``
    sensors: tuple[str, ...]
    labels: tuple[str, ...]

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(b for s in self.sensors for b in SENSOR_BANDS[s])

    def band_files(self, i: int) -> list[tuple[str, Path]]:
        out = []
        for sensor, folder in zip(self.sensors, self.folders[i]):
            d = self.root / folder
            out += [(b, d / f"{d.name}_{b}.tif") for b in SENSOR_BANDS[sensor]]
        return out

    def files(self, i: int) -> list[Path]:
        return [p for _, p in self.band_files(i)] + ([self.root / self.labels[i]] if self.labels[i] else [])

    def read(self, i: int) -> np.ndarray:
        import rasterio
        from rasterio.enums import Resampling

        out = np.empty((len(self.bands), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        for k, (band, path) in enumerate(self.band_files(i)):
            try:
                with rasterio.open(path) as src:
                    n = NATIVE_SIZE[band]
                    if (src.height, src.width) != (n, n):
                        raise DataError(
                            f"{path.parent}: band {band} of patch {path.parent.name} is {src.height}x{src.width} px; "
                            f"BigEarthNet's {band} is {n}x{n}"
                        )
                    out[k] = src.read(
                        1, out_shape=(IMAGE_SIZE, IMAGE_SIZE), out_dtype="float32", resampling=Resampling.bilinear
                    )
            except rasterio.errors.RasterioIOError as err:
                raise DataError(f"{path}: unreadable band file of patch {path.parent.name} ({err})") from None
        return out


# ------------------------------------------------------------------------------------------------ scanning
def _check_folder(folder: Path, sensor: str, label_json: bool, where: str) -> None:
    """The folder holds exactly the band files of its sensor (torchgeo stacks every .tif it finds) and, where
    torchgeo reads labels from it, one label JSON."""
    names = os.listdir(folder)
    tifs = {n for n in names if n.endswith(".tif")}
    want = {f"{folder.name}_{b}.tif" for b in SENSOR_BANDS[sensor]}
    if missing := sorted(want - tifs):
        bands = ", ".join(n[len(folder.name) + 1 : -4] for n in missing)
        raise DataError(f"{folder}: patch {folder.name} lacks band file(s) {bands}{where}")
    if extra := sorted(tifs - want):
        raise DataError(
            f"{folder}: unexpected file(s) {', '.join(extra)} in patch {folder.name} (torchgeo would stack every "
            f".tif of the folder as a band){where}"
        )
    if label_json and sum(n.endswith(".json") for n in names) != 1:
        raise DataError(f"{folder}: patch {folder.name} needs one *_labels_metadata.json (torchgeo reads it){where}")


def _v1_rows(table: Path) -> list[tuple[str, str]]:
    with open(table, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r]
    out = []
    for n, row in enumerate(rows, start=1):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{table}: line {n}: expected '<S2 patch>,<S1 patch>', got {','.join(row)!r}")
        out.append((row[0].strip(), row[1].strip()))
    return out


def split_sizes(root: Path | str, version: str = "v1") -> dict[str, int]:
    """Samples per split, read from the split lists alone (no patch is opened): a cheap identity check."""
    root = Path(root)
    if version == "v1":
        sizes = {}
        for split in SPLITS:
            table = root / f"bigearthnet-{split}.csv"
            if not table.is_file():
                raise DataError(f"{table}: missing split file (BigEarthNet v1 as torchgeo reads it)")
            sizes[split] = len(_v1_rows(table))
        return sizes
    import pandas as pd

    meta = root / "metadata.parquet"
    if not meta.is_file():
        raise DataError(f"{meta}: missing (BigEarthNet v2 as torchgeo reads it)")
    counts = pd.read_parquet(meta, columns=["split"])["split"].value_counts()
    return {s: int(counts.get(V2_SPLITS[s], 0)) for s in SPLITS}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan(
    root: Path | str, split: str, modality: str = "s1s2", num_classes: int = 19, version: str = "v1"
) -> LabelledSplit:
    """Scan one split into a multi-label :class:`LabelledSplit` read through a :class:`PatchSource`.

    Targets are ``[N, num_classes]`` in {0, 1} as torchgeo builds them; ``paths[i]`` is the patch folder that
    names sample ``i`` (S2's when S2 is read). Raises :class:`DataError` naming the file and patch at fault."""
    root = Path(root)
    if split not in SPLITS:
        raise VitbenchError(f"BigEarthNet split {split!r}: expected one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    if version == "v1":
        return _scan_v1(root, split, modality, num_classes)
    if version == "v2":
        if num_classes != 19:
            raise VitbenchError(f"BigEarthNet v2 has the 19-class nomenclature only, not {num_classes}")
        return _scan_v2(root, split, modality)
    raise VitbenchError(f"BigEarthNet version {version!r}: expected v1 or v2")


def _scan_v1(root: Path, split: str, modality: str, num_classes: int) -> LabelledSplit:
    used = sensors(modality)
    if num_classes not in (19, 43):
        raise VitbenchError(f"BigEarthNet num_classes {num_classes}: expected 19 or 43")
    for s in SPLITS:  # torchgeo's _verify wants all three split files
        if not (root / f"bigearthnet-{s}.csv").is_file():
            raise DataError(
                f"{root / f'bigearthnet-{s}.csv'}: missing split file (BigEarthNet v1 as torchgeo reads it: "
                f"{root}/bigearthnet-{{train,val,test}}.csv with one '<S2 patch>,<S1 patch>' pair a line)"
            )
    for s in used:
        if not (root / V1_DIRS[s]).is_dir():
            raise DataError(f"{root / V1_DIRS[s]}: missing folder of the {s.upper()} patches (BigEarthNet v1)")
    table = root / f"bigearthnet-{split}.csv"
    _v1_rows(table)  # malformed lines fail here, naming the line, not inside torchgeo
    ds = _torchgeo().BigEarthNet(str(root), split=split, bands=_TORCHGEO_BANDS[modality], num_classes=num_classes)
    label_sensor = "s2" if modality == "s2" else "s1"  # torchgeo's _load_target
    folders, labels, paths = [], [], []
    targets = np.zeros((len(ds), num_classes), dtype=np.int8)
    for i, pair in enumerate(ds.folders):
        where = f" ({table.name} line {i + 1})"
        s2, s1 = Path(pair["s2"]), Path(pair["s1"])
        if "s2" in used and not s2.is_dir():
            raise DataError(f"{table}: line {i + 1} names S2 patch {s2.name}, absent from {s2.parent}")
        if "s1" in used and not s1.is_dir():
            raise DataError(f"{table}: line {i + 1}: S2 patch {s2.name}'s S1 pair {s1.name} is absent from {s1.parent}")
        for s in used:
            _check_folder(s2 if s == "s2" else s1, s, s == label_sensor, where)
        try:
            targets[i] = ds._load_target(i).numpy()
        except KeyError as err:
            label_file = next((s2 if label_sensor == "s2" else s1).glob("*.json"))
            if err.args and err.args[0] == "labels":
                raise DataError(f"{label_file}: no 'labels' list (patch {label_file.parent.name})") from None
            raise DataError(
                f"{label_file}: label {err.args[0]!r} of patch {label_file.parent.name} is not in BigEarthNet's "
                "43-class nomenclature"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{s2 if label_sensor == 's2' else s1}: unreadable label JSON ({err})") from None
        folders.append(tuple(os.path.relpath(s2 if s == "s2" else s1, root) for s in used))
        label_dir = s2 if label_sensor == "s2" else s1
        labels.append(os.path.relpath(next(label_dir.glob("*.json")), root))
        paths.append(s2 if "s2" in used else s1)
    if not paths:
        raise DataError(f"{table}: no patches")
    source = PatchSource(root, tuple(folders), used, tuple(labels))
    _check_band_order(ds._load_paths(0), source.bands)
    classes = tuple(ds.class_sets[num_classes])
    return LabelledSplit(root, split, classes, tuple(paths), targets, source.bands, source)


def _check_band_order(torchgeo_paths: Sequence[str], bands: tuple[str, ...]) -> None:
    """The order torchgeo stacks the first sample's bands in must be the order the source reads (by name)."""
    found = tuple(Path(p).stem.rsplit("_", 1)[-1] for p in torchgeo_paths)
    if found != bands:
        raise VitbenchError(f"torchgeo stacks BigEarthNet bands as {found}, vitbench expects {bands}")


def _scan_v2(root: Path, split: str, modality: str) -> LabelledSplit:
    used = sensors(modality)
    for key, name in (*V2_DIRS.items(), ("metadata", "metadata.parquet")):
        if not (root / name).exists():  # torchgeo's _verify wants all four
            raise DataError(f"{root / name}: missing (BigEarthNet v2 as torchgeo reads it needs {key} there)")
    ds = _torchgeo().BigEarthNetV2(str(root), split=split, bands=_TORCHGEO_BANDS[modality])
    meta = ds.metadata_df
    folders, paths = [], []
    targets = np.zeros((len(ds), ds.num_classes), dtype=np.int8)
    for i in range(len(ds)):
        row = meta.loc[i]
        dirs = {
            "s2": root / V2_DIRS["s2"] / "_".join(str(row["patch_id"]).split("_")[:-2]) / str(row["patch_id"]),
            "s1": root / V2_DIRS["s1"] / "_".join(str(row["s1_name"]).split("_")[:-3]) / str(row["s1_name"]),
        }
        where = f" (metadata.parquet, {split} row {i})"
        if "s2" in used and not dirs["s2"].is_dir():
            raise DataError(
                f"{root / 'metadata.parquet'}: S2 patch {row['patch_id']} is absent from {dirs['s2'].parent}"
            )
        if "s1" in used and not dirs["s1"].is_dir():
            raise DataError(
                f"{root / 'metadata.parquet'}: S2 patch {row['patch_id']}'s S1 pair {row['s1_name']} is absent from "
                f"{dirs['s1'].parent}"
            )
        for s in used:
            _check_folder(dirs[s], s, False, where)
        try:
            targets[i] = ds._load_target(i).numpy()
        except KeyError as err:
            raise DataError(
                f"{root / 'metadata.parquet'}: label {err.args[0]!r} of patch {row['patch_id']} is not in "
                "BigEarthNet's 19-class nomenclature"
            ) from None
        folders.append(tuple(os.path.relpath(dirs[s], root) for s in used))
        paths.append(dirs["s2"] if "s2" in used else dirs["s1"])
    if not paths:
        raise DataError(f"{root / 'metadata.parquet'}: no patches in split {V2_SPLITS[split]}")
    source = PatchSource(root, tuple(folders), used, ("",) * len(paths))
    return LabelledSplit(root, split, tuple(ds.class_set), tuple(paths), targets, source.bands, source)


# ------------------------------------------------------------------------------------------------ synthetic
# (43-class CLC name, its 19-class name, bands it raises in units of the band's std / S1 in dB). Each class has an S2
# and an S1 signature, so every modality can learn it.
_SYNTH_CLASSES = (
    ("Continuous urban fabric", "Urban fabric", {"B04": 2.0, "B12": 2.0, "VV": 6.0}),
    ("Non-irrigated arable land", "Arable land", {"B08": 2.0, "B8A": 2.0, "VH": 6.0}),
    ("Pastures", "Pastures", {"B01": 2.0, "B09": 2.0, "VV": -6.0}),
    ("Broad-leaved forest", "Broad-leaved forest", {"B05": 2.0, "B06": 2.0, "VH": -6.0}),
    ("Water bodies", "Inland waters", {"B02": 2.0, "B03": 2.0, "B11": -2.0, "VV": 6.0, "VH": 6.0}),
)
_CLC_CODES = {
    "Urban fabric": 111,
    "Arable land": 211,
    "Pastures": 231,
    "Broad-leaved forest": 311,
    "Inland waters": 512,
}


def _write_band(path: Path, data: np.ndarray, row: int, col: int, res: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    transform = from_origin(500_000 + col * 1200, 5_600_000 - row * 1200, res, res)
    profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1, "dtype": data.dtype}
    with rasterio.open(path, "w", crs="EPSG:32633", transform=transform, **profile) as dst:
        dst.write(data, 1)


def _patch_arrays(rng: random.Random, nrng: np.random.Generator, on: list[int]) -> dict[str, np.ndarray]:
    """Each band at its native size: noise around BigEarthNet's mean, plus a blob per present label."""
    centres = [(rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75)) for _ in on]
    out = {}
    for band in (*S2_BANDS, *S1_BANDS):
        n = NATIVE_SIZE[band]
        yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / n
        s1 = band in S1_BANDS
        noise = 1.0 if s1 else 0.3 * BAND_STD[band]
        v = BAND_MEAN[band] + nrng.normal(0.0, noise, size=(n, n))
        for c, (cy, cx) in zip(on, centres):
            delta = _SYNTH_CLASSES[c][2].get(band)
            if delta is not None:
                blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.2**2))
                v = v + blob * delta * (1.0 if s1 else BAND_STD[band])
        out[band] = v.astype(np.float32) if s1 else np.clip(v, 0, 10_000).astype(np.uint16)
    return out


def _synth_patches(seed: int, counts: dict[str, int]) -> list[tuple[str, int, int, list[int], dict[str, np.ndarray]]]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    out = []
    k = 0
    for split in SPLITS:
        for _ in range(counts[split]):
            row, col = 10 + k // 50, 10 + k % 50
            on = sorted(rng.sample(range(len(_SYNTH_CLASSES)), rng.randint(1, 3)))
            out.append((split, row, col, on, _patch_arrays(rng, nrng, on)))
            k += 1
    return out


def _require_rasterio() -> None:
    try:
        import rasterio  # noqa: F401
    except ImportError as err:
        raise VitbenchError(f"writing GeoTIFFs needs rasterio ({err}); pip install 'vitbench[geo]'") from None


def synth_bigearthnet(out: Path | str, seed: int = 0, n_train: int = 40, n_val: int = 20, n_test: int = 20) -> Path:
    """Write a tiny BigEarthNet v1 (the layout above, as torchgeo's ``BigEarthNet`` reads it): GeoTIFFs at the real
    band sizes through rasterio, 43-class label JSONs for both sensors, the three split CSVs. Five classes, each
    showing as blobs in its own S2 and S1 bands, so a probe on any modality beats chance."""
    _require_rasterio()
    out = Path(out)
    rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split, row, col, on, arrays in _synth_patches(seed, {"train": n_train, "val": n_val, "test": n_test}):
        s2 = f"S2A_MSIL2A_20170613T101031_{row}_{col}"
        s1 = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{row}_{col}"
        names = [_SYNTH_CLASSES[c][0] for c in on]
        coords = {"ulx": 500_000 + col * 1200, "uly": 5_600_000 - row * 1200}
        coords |= {"lrx": coords["ulx"] + 1200, "lry": coords["uly"] - 1200}
        for sensor, patch in (("s2", s2), ("s1", s1)):
            d = out / V1_DIRS[sensor] / patch
            d.mkdir(parents=True, exist_ok=True)
            for band in SENSOR_BANDS[sensor]:
                _write_band(d / f"{patch}_{band}.tif", arrays[band], row, col, 1200 // NATIVE_SIZE[band])
            meta: dict[str, Any] = {"labels": names, "coordinates": coords, "projection": "EPSG:32633"}
            if sensor == "s2":
                meta |= {
                    "tile_source": "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP",
                    "acquisition_date": "2017-06-13",
                }
            else:
                meta |= {"corresponding_s2_patch": s2, "scene_source": "S1A_IW_GRDH_1SDV_20170613T165043"}
                meta["acquisition_time"] = "2017-06-13 16:50:43"
            (d / f"{patch}_labels_metadata.json").write_text(json.dumps(meta, indent=4), encoding="utf-8")
        rows[split].append(f"{s2},{s1}")
    for split in SPLITS:
        (out / f"bigearthnet-{split}.csv").write_text("\n".join(rows[split]) + "\n", encoding="utf-8")
    return out


def synth_bigearthnet_v2(out: Path | str, seed: int = 0, n_train: int = 40, n_val: int = 20, n_test: int = 20) -> Path:
    """Write a tiny BigEarthNet v2 as torchgeo's ``BigEarthNetV2`` reads it: the S1 / S2 / reference-map folders
    and ``metadata.parquet`` (19-class label names; the split column says ``validation`` for val)."""
    _require_rasterio()
    import pandas as pd

    out = Path(out)
    records = []
    for split, row, col, on, arrays in _synth_patches(seed, {"train": n_train, "val": n_val, "test": n_test}):
        tile, scene = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP", "S1A_IW_GRDH_1SDV_20170613T165043"
        s2, s1 = f"{tile}_{row}_{col}", f"{scene}_33UUP_{row}_{col}"
        for sensor, d, patch in (
            ("s2", out / V2_DIRS["s2"] / tile / s2, s2),
            ("s1", out / V2_DIRS["s1"] / scene / s1, s1),
        ):
            d.mkdir(parents=True, exist_ok=True)
            for band in SENSOR_BANDS[sensor]:
                _write_band(d / f"{patch}_{band}.tif", arrays[band], row, col, 1200 // NATIVE_SIZE[band])
        names = [_SYNTH_CLASSES[c][1] for c in on]
        ref = out / V2_DIRS["maps"] / tile / s2
        ref.mkdir(parents=True, exist_ok=True)
        codes = np.array([_CLC_CODES[n] for n in names], dtype=np.uint16)
        cover = codes[np.random.default_rng(row * 100 + col).integers(0, len(codes), size=(IMAGE_SIZE, IMAGE_SIZE))]
        _write_band(ref / f"{s2}_reference_map.tif", cover, row, col, 10)
        records.append(
            {
                "patch_id": s2,
                "labels": names,
                "split": V2_SPLITS[split],
                "country": "Austria",
                "s1_name": s1,
                "s2v1_name": f"S2A_MSIL2A_20170613T101031_{row}_{col}",
                "contains_seasonal_snow": False,
                "contains_cloud_or_shadow": False,
            }
        )
    pd.DataFrame.from_records(records).to_parquet(out / "metadata.parquet")
    return out
