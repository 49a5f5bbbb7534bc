"""Which split a sample lands in: the native split when the source has one, else a stable hash of its id.

A hash (not a random draw) so every worker, rerun and engine agrees without coordination.
"""
from __future__ import annotations

import hashlib

from generation.schema import Sample

SPLITS = ("train", "validation")
_NATIVE_VALIDATION = {"val", "valid", "validation", "dev", "test", "minival", "testmini"}


def normalise_native_split(native: str | None) -> str | None:
    """Map an upstream split name onto ours; None when there is nothing to map."""
    if not native:
        return None
    name = native.strip().lower()
    if name in _NATIVE_VALIDATION or name.startswith(("val", "test", "dev")):
        return "validation"
    return "train"


def hash_fraction(sample_id: str) -> float:
    """A number in [0, 1) fixed by the id alone."""
    return int(hashlib.sha256(sample_id.encode()).hexdigest()[:8], 16) / 2**32


def assign_split(sample: Sample, validation_fraction: float) -> str:
    if sample.split in SPLITS:
        return sample.split
    return "validation" if hash_fraction(sample.id) < validation_fraction else "train"
