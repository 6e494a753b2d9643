"""Write the teacher's guide, docs/teaching.md, from the measured figures: ``python tools/teaching_guide.py``.

Every number in the guide comes from a file: the notebooks' run times and the speed probe
from ``tlhelpers/notebook_times.json`` (written by ``tools/run_notebooks.py``), the
benchmark's figures from ``benchmarks/results.json``, the size of the prose from the
notebooks themselves. The schedules are built from them and checked to fit their slots.
``--check`` exits 1 when the committed guide differs from what the script writes now (a
test runs it), so the guide cannot drift from the measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "teaching.md"
TIMES = ROOT / "tlhelpers" / "notebook_times.json"
BENCHMARK = ROOT / "benchmarks" / "results.json"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: The assumptions the schedules rest on (the guide states each of them).
READING_WORDS_PER_MINUTE = 100  # a learner reading a lesson's prose, while its cells run or after
DISCUSSION_MINUTES = 5  # questions and a look at the outputs, per lesson
T4_SPEEDUP_FULL = 3  # a Colab T4 against the 2-core CPU here, full mode: an estimate, not a measurement


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def lessons() -> list[dict]:
    """Each notebook's number, title, prose length and measured run times."""
    times = json.loads(TIMES.read_text())["notebooks"]
    out = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip()
        main_path = nb.cells
        for i, cell in enumerate(nb.cells):  # the lesson's main path ends at "Going further" or the exercises
            if cell.cell_type == "markdown" and re.search(r"^## (Going further|Exercises)", cell.source, re.M):
                main_path = nb.cells[: i + 1]
                break
        words = sum(len(c.source.split()) for c in main_path if c.cell_type == "markdown")
        measured = times[path.stem]
        out.append(
            {
                "number": path.name[:2],
                "file": path.name,
                "title": title,
                "words": words,
                "read": math.ceil(words / READING_WORDS_PER_MINUTE) + DISCUSSION_MINUTES,
                "quick": minutes(measured["quick"]),
                "full": minutes(measured["full"]),
                "t4_full": minutes(measured["full"] / T4_SPEEDUP_FULL),
            }
        )
    return out


def slot(lesson: dict, mode: str) -> int:
    """Minutes a lesson takes in a schedule: its cells run while learners read, so the longer of the two, plus the discussion."""
    return max(lesson["read"] - DISCUSSION_MINUTES, lesson[mode]) + DISCUSSION_MINUTES


def timetable(title: str, budget: int, items: list[tuple[str, int]]) -> str:
    """A schedule as a table of clock times from 9:00; raises when it does not fit ``budget`` minutes."""
    total = sum(m for _, m in items)
    if total > budget:
        raise SystemExit(f"The schedule {title!r} needs {total} min, more than its {budget}: change its lessons.")
    rows, clock = [], 9 * 60
    for what, length in items:
        rows.append(f"| {clock // 60}:{clock % 60:02d} | {length} min | {what} |")
        clock += length
    rows.append(f"| {clock // 60}:{clock % 60:02d} | | end ({total} of {budget} min planned; the rest is slack) |")
    return "\n".join([f"**{title}**", "", "| Starts | Length | What |", "|---|---:|---|", *rows])


#: The three schedules: title, minutes available, and the parts in order. A part is a lesson's
#: notebook number (its slot comes from the measurements) or a (what, minutes) pair.
SCHEDULES = [
    (
        "A 90-minute taster (learners' laptops or Colab, quick mode)",
        90,
        "quick",
        [
            ("Welcome; `python -m tlhelpers.check` on every machine (done the day before: this is the last look)", 10),
            "01",
            "02",
            ("Wrap-up: what transferred, where to go next (notebooks 3 to 8 to take home)", 5),
        ],
    ),
    (
        "A half day (3.5 hours; quick mode on laptops, or full mode on Colab's T4 GPUs)",
        210,
        "quick",
        [("Welcome and the setup check", 10), "01", "02", "03", ("Break", 15), "05", "08"]
        + [("Wrap-up and exercises to take home (notebooks 4, 6 and 7 too)", 10)],
    ),
    (
        "A full day (9:00 to 17:00; full mode on Colab's T4 GPUs, times estimated)",
        480,
        "t4_full",
        [("Welcome and the setup check", 15), "01", "02", ("Break", 15), "03", ("Lunch", 60), "04", "05"]
        + [("Break", 15), "06", "07", "08", ("Exercises of the learners' choice, and wrap-up", 30)],
    ),
]


def schedules(by_number: dict[str, dict]) -> str:
    """The three schedules as timetables, each lesson's slot from its measured times."""
    where = {"quick": "quick mode, laptops", "t4_full": "full mode, Colab T4"}
    tables = []
    for title, budget, mode, parts in SCHEDULES:
        items = []
        for part in parts:
            if isinstance(part, str):
                item = by_number[part]
                items.append((f"Notebook {part}, {item['title'].split('. ', 1)[-1]} ({where[mode]})", slot(item, mode)))
            else:
                items.append(part)
        tables.append(timetable(title, budget, items))
    return "\n\n".join(tables)


def run_time_table(items: list[dict], record: dict) -> str:
    rows = [
        "| Notebook | Prose (words, main path) | Reading and discussion | Quick mode, CPU | Full mode, CPU | Full mode, Colab T4 (estimated) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for item in items:
        rows.append(
            f"| [{item['number']}. {item['title'].split('. ', 1)[-1]}](../notebooks/{item['file']}) | {item['words']:,} | "
            f"{item['read']} min | {item['quick']} min | {item['full']} min | about {item['t4_full']} min |"
        )
    rows += [
        "",
        f"Measured on {record['machine']} ({record['software']}), {record['measured']}, each notebook in a fresh kernel "
        f"with the offline kit installed; MobileNetV2 at 160 px ran {record['probe_images_per_second']:.0f} images per "
        "second there, the median of the speed probe of `python -m tlhelpers.check` taken around the runs (the check "
        "scales each time by the probe of its own run to estimate it on the machine it runs on). "
        f"The Colab T4 column is an estimate, not a measurement: the full-mode time divided by {T4_SPEEDUP_FULL}, the "
        "speed-up a T4 gives these lessons' network work once the data pipeline and Python's share are counted. Quick "
        "mode is mostly start-up and decoding, which a GPU does not shorten.",
    ]
    return "\n".join(rows)


def benchmark_line(results: dict) -> str:
    s, c = results["standard"], results["cached"]
    return (
        f"the standard recipe took {s['seconds']:.0f} s for 10 epochs on the 2,000 training photos, the cached-features "
        f"recipe {c['seconds']:.0f} s ({s['seconds'] / c['seconds']:.0f} times as fast), at validation accuracies of "
        f"{s['val_accuracy']:.1%} and {c['val_accuracy']:.1%}"
    )


TEMPLATE = """\
# Teaching with this collection

This guide is for a teacher who runs the eight notebooks as a workshop: who they suit, three
ready schedules, how to prepare the room, what goes wrong most often, and how to use the
exercises. Its figures are measured (the table below says where) and the file is written by
`tools/teaching_guide.py` from those measurements, so it is regenerated, not edited, when they change.

## Who it is for

Learners who can read and run Python (functions, loops, NumPy arrays) and want to train an
image classifier on their own photos. No earlier deep-learning course is needed: notebook 1
introduces convolutional bases, notebook 2 the Keras functional model and the three data sets.
What helps: having seen a training loop once, and knowing what a validation set is for. Each
notebook opens with what the learner will be able to do, and ends with a recap and two to four
exercises.

## How long each lesson takes

@@RUN_TIMES@@

A lesson's time in a schedule below is its reading and discussion or its run time, whichever is
longer (learners read while the cells run), plus {discussion} minutes of discussion. Reading is
counted at {wpm} words a minute.

## Three ready schedules

@@SCHEDULES@@

Quick mode (`QUICK = True` in each notebook's parameters cell) runs on the 120 photos bundled with
`tlhelpers`: every number is computed as in full mode, but from a handful of photos, so it moves
with every photo; the notebooks say where quick mode is too small to show a point and give the
full-mode figure. In the full-day plan, start each full-mode notebook as the lesson begins and
talk through its first sections while it runs.

Why the lessons can train in seconds on a laptop: they cache the frozen base's features (notebook
2). On the project's benchmark machine @@BENCHMARK@@.

## Preparing the room

1. **The offline kit on a USB stick.** Venue Wi-Fi rarely survives thirty people downloading the
   same weights and datasets at once. On a machine with internet access, build the kit once:
   `python -m tlhelpers.kit download /media/usb/kit` (the MobileNetV2 weights, the TF Hub model,
   `cats_and_dogs_filtered` and `flower_photos`). Copy it with links followed
   (`cp -rL`).
2. **On every machine**, with the project installed (`pip install -r requirements.txt` in a
   clone, or `pip install "tlhelpers[litert]"`): `python -m tlhelpers.kit install /media/usb/kit`.
   It copies only the files the kit's `SHA256SUMS` lists, checking each, into Keras' cache and
   `~/.tlhelpers`; a second run copies nothing.
3. **The day before**, ask every learner to run `python -m tlhelpers.check`: it says in one table
   whether their Python, TensorFlow, Keras and NumPy are supported, whether the weights, the TF
   Hub model and the datasets are installed (or reachable), whether there is disk space, and how
   long each notebook will take on their machine; it exits with an error naming the fix when a
   lesson cannot run. `python -m tlhelpers.check --download` fetches what is missing where there
   is internet.
4. **In Colab**, nothing needs installing beforehand: each notebook's first cell installs
   `tlhelpers` at the release the notebooks were written for.

## What goes wrong most often

* **No GPU in Colab.** The default runtime is a CPU: full mode then takes the CPU times above, or
  longer. *Runtime > Change runtime type > T4 GPU* before running the first cell; on a busy day
  Colab may refuse a GPU: fall back to quick mode.
* **A TPU runtime.** Colab's TPU runtimes have no TensorFlow; the install cell says so and
  installs nothing. Switch to *CPU* or *T4 GPU*.
* **Colab's versions change.** Colab upgrades Python, TensorFlow and Keras a few times a year.
  The notebooks are tested on Colab's stack of the release (the README names it); when a new
  runtime breaks something, *Runtime > Change runtime type* offers the previous runtime version
  for a while, and `python -m tlhelpers.check` in a cell (`!python -m tlhelpers.check`) shows what
  changed.
* **The venue's firewall blocks downloads.** Keras' weights come from `storage.googleapis.com`,
  the TF Hub model from `www.kaggle.com`, the datasets from Google's download servers; firewalls
  that block them make the first cell that needs them fail with a message naming the offline kit.
  Install the kit (above), and check with `python -m tlhelpers.check`.
* **A learner's own photos.** Phones save HEIC files, which are skipped ("not an image file
  extension": convert them to JPEG); PNG screenshots with transparency and CMYK scans are
  converted to RGB once; broken or truncated files are skipped and named. `tl.scan_image_tree(folder)`
  lists all of it before any training, and `data/my_photos/README.md` gives the layout a folder
  of labelled photos needs (one sub-folder per class).
* **Out of memory on a small laptop.** Full mode keeps the decoded photos in memory only when
  they fit in a quarter of the free memory; close other programs, or use quick mode.

## Exercises and solutions

Every notebook ends with two to four exercises, each with a hint and a worked solution folded
away under *Solution* (click to open): learners see the task first. In a workshop, give the
exercises of the lesson just finished while the next notebook's first cells run, and open the
solutions together at the start of the next lesson. The solutions are code to run after the
notebook's own cells; they are not run when the notebooks are tested, so treat their numbers as
the learners' to discover.
"""


def write() -> str:
    items = lessons()
    record = json.loads(TIMES.read_text())
    text = TEMPLATE.format(discussion=DISCUSSION_MINUTES, wpm=READING_WORDS_PER_MINUTE)
    text = text.replace("@@RUN_TIMES@@", run_time_table(items, record))
    text = text.replace("@@SCHEDULES@@", schedules({i["number"]: i for i in items}))
    return text.replace("@@BENCHMARK@@", benchmark_line(json.loads(BENCHMARK.read_text())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/teaching.md is not what the script writes")
    args = parser.parse_args(argv)
    text = write()
    if args.check:
        if GUIDE.read_text() != text:
            print("docs/teaching.md differs from the measured figures: run python tools/teaching_guide.py", file=sys.stderr)
            return 1
        return 0
    GUIDE.write_text(text)
    print(f"wrote {GUIDE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
