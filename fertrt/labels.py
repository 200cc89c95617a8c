"""The canonical expression labels and each data set's own numbering.

Canonical order (index = class id everywhere in fertrt): the 7 basic expressions, then
contempt for 8-class sets. It equals AffectNet's order; FER2013 and RAF-DB differ.
"""

from __future__ import annotations

from .errors import FertrtError

BASIC7 = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
EIGHT = BASIC7 + ("contempt",)

# Aliases seen in folder names and data set documentation -> canonical name.
_ALIASES = {
    "neutral": "neutral",
    "neu": "neutral",
    "calm": "neutral",
    "happiness": "happiness",
    "happy": "happiness",
    "hap": "happiness",
    "joy": "happiness",
    "sadness": "sadness",
    "sad": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
    "sur": "surprise",
    "fear": "fear",
    "afraid": "fear",
    "fearful": "fear",
    "disgust": "disgust",
    "disgusted": "disgust",
    "dis": "disgust",
    "anger": "anger",
    "angry": "anger",
    "ang": "anger",
    "contempt": "contempt",
}

# Each data set's label id -> canonical name (from the data sets' own documentation).
FER2013_IDS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
RAFDB_IDS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
AFFECTNET_IDS = {
    0: "neutral",
    1: "happiness",
    2: "sadness",
    3: "surprise",
    4: "fear",
    5: "disgust",
    6: "anger",
    7: "contempt",
}
# FERPlus vote columns in fer2013new.csv, in file order.
FERPLUS_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)


def canonical(name: str) -> str:
    key = name.strip().lower()
    if key not in _ALIASES:
        raise FertrtError(f"unknown expression label {name!r}; expected one of {', '.join(EIGHT)}")
    return _ALIASES[key]


def class_names(num_classes: int) -> tuple[str, ...]:
    if num_classes == 7:
        return BASIC7
    if num_classes == 8:
        return EIGHT
    raise FertrtError(f"num_classes={num_classes}: expected 7 (basic expressions) or 8 (with contempt)")
