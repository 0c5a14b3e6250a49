"""The output folder of `neurobrowse replicate`: its layout and names, read by the sweep (pipeline) and
the report alike.

Layout of the output folder ``OUT``::

    OUT/replicate.json                 the settings (preset, sizes, seed, corpus, ...): the folder's identity
    OUT/corpus/                        token shards + tokenizer (unless --corpus names another)
    OUT/L<n>/models/<model>/           checkpoints: gelu, solu_ln, solu, control, gelu_mlp<width>
    OUT/L<n>/stores/<model>/           recorded and indexed stores: gelu, solu_ln, solu, control
    OUT/L<n>/study/                    the blinded study of the four (neurobrowse.study); rate with `study rate`
    OUT/steps/<step>.json              completion markers: a step with a marker is skipped on a rerun
    OUT/report/                        report.txt, report.json, report.png (`neurobrowse replicate report OUT`)
"""

from __future__ import annotations

import json
from pathlib import Path

from neurobrowse.replicate.presets import ReplicateError

MANIFEST = "replicate.json"
KIND = "neurobrowse-replicate"
VERSION = 1
STUDIED = ("gelu", "solu_ln", "solu", "control")  # the models of each size's study (and recorded)
TRAINED = ("gelu", "solu_ln", "solu")


def model_name_for_width(width: int) -> str:
    return f"gelu_mlp{width}"


def size_dir(out: Path, n: int) -> Path:
    return out / f"L{n}"


def marker_path(out: Path, name: str) -> Path:
    return out / "steps" / f"{name}.json"


def read_manifest(out: Path) -> dict:
    path = Path(out) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplicateError(f"{out} is not a replicate folder (no {MANIFEST}); run `neurobrowse replicate --out "
                             f"{out}` first") from None
    except ValueError as e:
        raise ReplicateError(f"{path} is damaged ({e}); it is the folder's record of its settings") from None
    if doc.get("kind") != KIND:
        raise ReplicateError(f"{path} is not a replicate manifest (kind {doc.get('kind')!r})")
    return doc
