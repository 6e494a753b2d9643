"""``python -m tlhelpers.check``: is this machine ready for the lessons?

A learner runs it on their laptop the day before a workshop; a teacher runs it on the
room's machines. It reports, in a short table: the versions of Python, TensorFlow,
Keras, NumPy and tensorflow-hub against the ranges the project supports; whether a GPU
is visible; whether the MobileNetV2 weights, the TF Hub model and each named dataset are
here (installed from the offline kit, or in the cache from an earlier download) or can
be downloaded, and if not, the one command that fixes it; the free disk space against
what the missing datasets need; and a short speed probe (a few batches through
MobileNetV2 at 160 px) turned into an estimate of each notebook's run time on this
machine, in quick and in full mode. It exits with status 1 when a lesson cannot run,
saying why.

It starts without TensorFlow (the file checks print at once), imports it only for the
GPU and speed probe (``--no-probe`` skips both), and downloads nothing unless asked:
``--download`` fetches what is missing, with the package's size caps and checksums.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import core, datasets, kit

#: Supported versions: the lowest, and the highest tested (None: no upper bound is known).
SUPPORTED = {
    "Python": ("3.10", "3.13"),
    "tensorflow": ("2.16", "2.21"),
    "keras": ("3.3", None),
    "numpy": ("1.26", None),
    "tensorflow-hub": ("0.16", None),
}
#: The run times the estimates scale from (measured by tools/run_notebooks.py).
TIMES_FILE = Path(__file__).resolve().parent / "notebook_times.json"
_PROBE_SIZE = 160
_PROBE_BATCH = 32


def _weights(alpha: str, size: int, top: bool = False) -> str:
    return kit.mobilenet_v2_weights_name(alpha, size, top)


@dataclass(frozen=True)
class Lesson:
    """What one notebook needs, in quick and in full mode.

    Attributes:
        name: the notebook's file name without ``.ipynb``.
        weights: mode -> the Keras weight files it loads.
        datasets: mode -> the named datasets it reads; ``"a|b"`` means a, or b when a is missing.
        hub: whether it loads the TF Hub model.
        packages: Python modules it imports beyond the package's own dependencies.
    """

    name: str
    weights: dict[str, tuple[str, ...]]
    datasets: dict[str, tuple[str, ...]]
    hub: bool = False
    packages: tuple[str, ...] = ()


def _both(*items: str) -> dict[str, tuple[str, ...]]:
    return {"quick": tuple(items), "full": tuple(items)}


SAMPLE_OR_FULL = {"quick": ("cats_and_dogs_sample",), "full": ("cats_and_dogs_filtered",)}
LESSONS = [
    Lesson("01_base_model", _both(_weights("1.0", 224, True), _weights("1.0", 160)), SAMPLE_OR_FULL),
    Lesson("02_feature_extraction", _both(_weights("1.0", 160), _weights("0.35", 160)), SAMPLE_OR_FULL),
    Lesson("03_fine_tuning", {"quick": (_weights("1.0", 96),), "full": (_weights("1.0", 160),)}, SAMPLE_OR_FULL),
    Lesson(
        "04_tfhub_feature_extractor",
        _both(),
        {"quick": ("cats_and_dogs_sample",), "full": ("alien_vs_predator|cats_and_dogs_filtered",)},
        hub=True,
    ),
    Lesson("05_predictions_and_evaluation", _both(_weights("1.0", 160)), SAMPLE_OR_FULL),
    Lesson("06_generic_base_model_loader", _both(_weights("0.35", 224)), _both()),
    Lesson("07_deploy_litert_and_savedmodel", _both(_weights("1.0", 160)), SAMPLE_OR_FULL, packages=("ai_edge_litert", "pandas")),
    Lesson(
        "08_multiclass_flowers",
        {"quick": (_weights("0.35", 96),), "full": (_weights("1.0", 160),)},
        _both("flower_photos"),
    ),
]


def _needed_weights() -> list[str]:
    """Every Keras weight file some lesson loads, in either mode."""
    return sorted({w for lesson in LESSONS for files in lesson.weights.values() for w in files})


@dataclass
class Row:
    """One line of the report: what was checked, ``ok``/``warn``/``FAIL``, and what was found or what to do."""

    item: str
    status: str
    detail: str


@dataclass
class Report:
    """Everything the check found."""

    rows: list[Row] = field(default_factory=list)
    available: dict[str, bool] = field(default_factory=dict)  # weights files, "hub", dataset names -> usable
    blockers: list[str] = field(default_factory=list)  # reasons no lesson can run
    probe: float | None = None  # images per second through MobileNetV2 at 160 px
    device: str = "CPU"
    lessons: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # notebook -> mode -> what is missing

    def add(self, item: str, status: str, detail: str) -> None:
        self.rows.append(Row(item, status, detail))


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def _in_range(version: str, low: str, high: str | None) -> bool:
    v = _version_tuple(version)
    if v[: len(_version_tuple(low))] < _version_tuple(low):
        return False
    return high is None or v[: len(_version_tuple(high))] <= _version_tuple(high)


def _check_versions(report: Report) -> None:
    python = platform.python_version()
    low, high = SUPPORTED["Python"]
    ok = _in_range(python, low, high)
    report.add(f"Python {python}", "ok" if ok else "FAIL", f"supported: {low} to {high}")
    if not ok:
        report.blockers.append(f"Python {python} is outside {low} to {high}: install a supported Python")
    for package in ("tensorflow", "keras", "numpy", "tensorflow-hub"):
        low, high = SUPPORTED[package]
        wanted = f"{low} or newer" if high is None else f"{low} to {high}"
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            required = package != "tensorflow-hub"
            report.add(package, "FAIL" if required else "warn", f"not installed (needs {wanted}): pip install tlhelpers")
            if required:
                report.blockers.append(f"{package} is not installed: pip install tlhelpers")
            continue
        ok = _in_range(version, low, high)
        newer = high is not None and _version_tuple(version)[: len(_version_tuple(high))] > _version_tuple(high)
        status = "ok" if ok else ("warn" if newer else "FAIL")
        detail = f"supported: {wanted}" + (" (newer than the newest tested: it may work)" if newer else "")
        report.add(f"{package} {version}", status, detail)
        if status == "FAIL":
            report.blockers.append(f"{package} {version} is older than {low}: pip install -U {package}")


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` answers at all (any HTTP status counts) within ``timeout`` seconds."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except Exception:  # noqa: BLE001 (DNS, refused, timeouts, proxies: all mean "not reachable")
        return False


def _h5_readable(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file h5py can open and list (a truncated download is not)."""
    try:
        import h5py

        with h5py.File(path, "r") as fh:
            list(fh.keys())
        return True
    except Exception:  # noqa: BLE001 (h5py raises OSError, KeyError, ValueError for damaged files)
        return False


def _source(path: Path, record: dict[str, str]) -> str:
    """Where an existing file came from: the offline kit (per its install record) or an earlier download."""
    digest = record.get(str(path))
    if digest is None:
        return "cache"
    return "kit" if core.sha256(path) == digest else "changed"


#: The one command that fixes a missing or damaged download (or the other, where there is internet).
FIX = "`python -m tlhelpers.kit install PATH/TO/kit`, or `python -m tlhelpers.check --download` where there is internet"


def _check_weights(report: Report, record: dict[str, str], online: dict[str, bool]) -> None:
    needed = _needed_weights()
    folder = core.keras_models_dir()
    sources, missing, damaged = [], [], []
    for name in needed:
        path = folder / name
        if not path.exists():
            missing.append(name)
            report.available[name] = False
            continue
        source = _source(path.resolve(), record) if path.is_symlink() else _source(path, record)
        if source == "changed" or not _h5_readable(path):
            damaged.append(name)
            report.available[name] = False
        else:
            sources.append(source)
            report.available[name] = True
    if damaged:
        for name in damaged:
            report.add(
                "MobileNetV2 weights",
                "FAIL",
                f"{folder / name} is damaged (it does not open as HDF5 or differs from the kit's copy): delete it, then {FIX}",
            )
    if missing:
        reachable = online.setdefault("keras", _reachable(kit.KERAS_WEIGHTS_URL))
        for name in missing:
            report.available[name] = reachable
        status = "ok" if reachable else "FAIL"
        how = "downloaded on first use (the network answers)" if reachable else f"not here and no network: {FIX}"
        report.add("MobileNetV2 weights", status, f"{len(missing)} of {len(needed)} files missing: {how}")
    if not missing and not damaged:
        report.add("MobileNetV2 weights", "ok", f"all {len(needed)} files, {_from(sources)}")


def _from(sources: list[str]) -> str:
    kinds = set(sources)
    if kinds == {"kit"}:
        return "from the offline kit"
    if kinds == {"cache"}:
        return "in Keras' cache from an earlier download"
    return "from the offline kit and earlier downloads"


def _check_hub(report: Report, record: dict[str, str], online: dict[str, bool]) -> None:
    folder = core.hub_cache_dir() / core.hub_handle_dirname(kit.MOBILENET_V2_FEATURE_VECTOR)
    model = folder / "saved_model.pb"
    if model.exists():
        source = _source(model, record)
        report.available["hub"] = source != "changed"
        if source == "changed":
            report.add("TF Hub model", "FAIL", f"{folder} differs from the kit's copy: delete it, then install the kit again")
        else:
            report.add("TF Hub model", "ok", "from the offline kit" if source == "kit" else "in TF Hub's cache")
        return
    reachable = online.setdefault("kaggle", _reachable("https://www.kaggle.com/"))
    report.available["hub"] = reachable
    report.add(
        "TF Hub model",
        "ok" if reachable else "FAIL",
        "downloaded on first use (the network answers)" if reachable else f"not here and no network: {FIX}",
    )


def _check_datasets(report: Report, record: dict[str, str], online: dict[str, bool]) -> int:
    """Check every named dataset; returns the bytes the missing ones need on disk (archive and extracted copy)."""
    needed_bytes = 0
    for name, source in datasets.DATASETS.items():
        folder = core.datasets_dir() / name
        if datasets.is_complete(folder, source):
            count = sum(1 for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            prefixes = (f"{folder}/", f"{folder.resolve()}/")
            origin = "from the offline kit" if any(f.startswith(prefixes) for f in record) else "downloaded earlier"
            report.available[name] = True
            report.add(name, "ok", f"{count:,} photos, {origin}")
            continue
        needed_bytes += 2 * (source.size or 0)
        if source.urls[0].startswith("kaggle://"):
            report.available[name] = False
            report.add(
                name, "warn", "not installed (from Kaggle, with an account); notebook 4 uses cats_and_dogs_filtered instead"
            )
            continue
        url = source.urls[0]
        reachable = online.setdefault(url, _reachable(url))
        report.available[name] = reachable
        size = f"{source.size / 1e6:.0f} MB" if source.size else "size unknown"
        report.add(
            name,
            "ok" if reachable else "FAIL",
            f"downloaded on first use ({size}; the network answers)" if reachable else f"not here and no network: {FIX}",
        )
    report.available["cats_and_dogs_sample"] = datasets.BUNDLED["cats_and_dogs_sample"].is_dir()
    return needed_bytes


def _check_disk(report: Report, needed_bytes: int) -> None:
    folder = core.home()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    margin = 1 << 30  # feature caches, converted copies and saved models
    status = "ok" if free > needed_bytes + margin else "FAIL"
    report.add(
        "disk space",
        status,
        f"{free / 1e9:.1f} GB free where the datasets go; the missing datasets need {needed_bytes / 1e9:.2f} GB, "
        f"the caches about {margin / 1e9:.1f} GB",
    )
    if status == "FAIL":
        report.blockers.append(f"too little disk space: free {(needed_bytes + margin - free) / 1e9:.1f} GB more")


def _probe(report: Report) -> None:
    """Import TensorFlow, look for a GPU, and time a few batches through MobileNetV2 at 160 px."""
    try:
        from ._tf import keras, tf
        from .runtime import images_per_second
    except Exception as err:  # noqa: BLE001 (a broken install raises anything)
        report.add("TensorFlow", "FAIL", f"does not import ({type(err).__name__}: {err}): pip install -U tlhelpers")
        report.blockers.append("TensorFlow does not import")
        return
    gpus = tf.config.list_physical_devices("GPU")
    report.device = "GPU" if gpus else "CPU"
    report.add("GPU", "ok", f"{len(gpus)} visible: {gpus[0].name}" if gpus else "none visible: the lessons run on the CPU")
    model = keras.applications.MobileNetV2(input_shape=(_PROBE_SIZE, _PROBE_SIZE, 3), include_top=False, weights=None)
    report.probe = images_per_second(model, batch_size=_PROBE_BATCH, repeats=3, warmup=1)
    report.add("speed", "ok", f"MobileNetV2 at {_PROBE_SIZE} px: {report.probe:.0f} images/s on the {report.device}")


def reference_times() -> dict:
    """The measured notebook times the estimates scale from (``notebook_times.json``)."""
    return json.loads(TIMES_FILE.read_text())


def estimate_seconds(lesson: str, mode: str, probe: float, reference: dict | None = None) -> float | None:
    """A notebook's run time on this machine: its measured time, scaled by the speed probe.

    ``reference`` holds each notebook's measured seconds in both modes and, beside each,
    the probe's speed in the run that measured it (``"<mode>_probe"``; the file's overall
    ``probe_images_per_second`` where a time has none); the estimate is measured
    seconds x that speed / this machine's speed. On a GPU, only the network's share of the
    time speeds up (decoding and plotting stay on the CPU), so read it as a lower bound.
    """
    reference = reference or reference_times()
    measured = reference["notebooks"].get(lesson, {})
    seconds = measured.get(mode)
    if seconds is None or not probe:
        return None
    return seconds * measured.get(f"{mode}_probe", reference["probe_images_per_second"]) / probe


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _lesson_blockers(lesson: Lesson, mode: str, report: Report) -> list[str]:
    reasons = [f"weights {w} missing" for w in lesson.weights[mode] if not report.available.get(w)]
    for names in lesson.datasets[mode]:
        if not any(report.available.get(n) for n in names.split("|")):
            reasons.append(f"dataset {names.split('|')[-1]} missing")
    if lesson.hub and not report.available.get("hub"):
        reasons.append("TF Hub model missing")
    reasons += [f"package {p} not installed" for p in lesson.packages if importlib.util.find_spec(p) is None]
    return reasons


def run(download: bool = False, probe: bool = True, stream=None) -> Report:
    """Check this machine and print the report; returns it (``report.blockers`` empty: every lesson can run)."""
    stream = stream or sys.stdout
    report = Report()
    online: dict[str, bool] = {}
    _check_versions(report)
    if download:
        _download_missing(stream)
    record = kit.installed_files()
    _check_weights(report, record, online)
    _check_hub(report, record, online)
    _check_disk(report, _check_datasets(report, record, online))
    _print_rows(report.rows, stream)
    if probe and not report.blockers:
        first = len(report.rows)
        _probe(report)
        _print_rows(report.rows[first:], stream)
    for lesson in LESSONS:
        report.lessons[lesson.name] = {mode: _lesson_blockers(lesson, mode, report) for mode in ("quick", "full")}
        if report.lessons[lesson.name]["full"]:
            report.blockers.append(f"{lesson.name}: " + "; ".join(report.lessons[lesson.name]["full"]))
    _print_lessons(report, stream)
    return report


def _print_rows(rows: list[Row], stream) -> None:
    for row in rows:
        print(f"  {row.status:<4}  {row.item:<24}  {row.detail}", file=stream, flush=True)


def _print_lessons(report: Report, stream) -> None:
    reference = reference_times() if TIMES_FILE.exists() else None
    print(
        "\nLessons" + (" (estimated run time on this machine, quick / full mode)" if report.probe and reference else "") + ":",
        file=stream,
    )
    for name, blocked in report.lessons.items():
        times = ""
        if report.probe and reference:
            times = " / ".join(_minutes(estimate_seconds(name, m, report.probe, reference)) for m in ("quick", "full"))
        status = "ok" if not blocked["full"] else ("warn" if not blocked["quick"] else "FAIL")
        why = "; ".join(blocked["full"])
        mode = "either mode" if status == "FAIL" else "full mode"
        detail = times + (f"  cannot run in {mode}: {why}" if why else "") + (" (quick mode can)" if status == "warn" else "")
        print(f"  {status:<4}  {name:<32} {detail}", file=stream)
    if report.probe and report.device == "GPU":
        print("  (on a GPU only the network's share of each run speeds up: read the estimates as lower bounds)", file=stream)
    verdict = (
        "every lesson can run here."
        if not report.blockers
        else f"{len(report.blockers)} problem(s): " + " | ".join(report.blockers)
    )
    print(f"\nVerdict: {verdict}", file=stream, flush=True)


def _download_missing(stream) -> None:
    """Fetch the weights, the TF Hub model and the datasets that are not here (with the usual checks)."""
    from ._tf import keras
    from .hub import resolve_handle

    needed = _needed_weights()
    for name in needed:
        if not (core.keras_models_dir() / name).exists():
            print(f"downloading {name}", file=stream, flush=True)
            keras.utils.get_file(name, kit.KERAS_WEIGHTS_URL + "mobilenet_v2/" + name, cache_subdir="models")
    print("getting the TF Hub model", file=stream, flush=True)
    resolve_handle(kit.MOBILENET_V2_FEATURE_VECTOR)
    for name in datasets.DATASETS:
        try:
            print(f"getting {name}", file=stream, flush=True)
            datasets.dataset_path(name)
        except datasets.DatasetUnavailableError as err:
            print(f"  {err}", file=stream, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m tlhelpers.check [--download] [--no-probe]``; exit status 1 when a lesson cannot run."""
    parser = argparse.ArgumentParser(prog="python -m tlhelpers.check", description=__doc__.splitlines()[0])
    parser.add_argument("--download", action="store_true", help="fetch what is missing (weights, TF Hub model, datasets)")
    parser.add_argument("--no-probe", action="store_true", help="skip importing TensorFlow (no GPU check, no speed probe)")
    args = parser.parse_args(argv)
    print(f"tlhelpers check: {platform.node() or 'this machine'}, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    report = run(download=args.download, probe=not args.no_probe)
    return 1 if report.blockers else 0


if __name__ == "__main__":
    sys.exit(main())
