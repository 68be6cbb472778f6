"""Medical-Diff-VQA rows with the exact templates of data-contract §5.5.

Pairing: each study whose chosen image is frontal (``view`` postero-anterior/antero-posterior in
``mimic_all``) gets ONE random earlier (strictly smaller ``study_order``) frontal study of the same
subject as reference. Then at most one question of each type, in the order abnormality, presence,
view, location, level, type, difference.
"""

from __future__ import annotations

import random

# the 30 official names (data-contract §5.7.1), for the random presence questions
OFFICIAL = (
    "pleural effusion", "atelectasis", "cardiomegaly", "enlargement of the cardiac silhouette", "edema",
    "hernia", "vascular congestion", "hilar congestion", "pneumothorax", "heart failure", "lung opacity",
    "pneumonia", "tortuosity of the descending aorta", "scoliosis", "gastric distention", "hypoxemia",
    "hypertensive heart disease", "hematoma", "tortuosity of the thoracic aorta", "contusion", "emphysema",
    "granuloma", "calcification", "pleural thickening", "thymoma", "blunting of the costophrenic angle",
    "consolidation", "fracture", "pneumomediastinum", "air collection",
)
FRONTAL = ("postero-anterior", "antero-posterior")
_FLIP = {"left": "right", "right": "left", "upper": "lower", "lower": "upper"}


def _series(items: list[str]) -> str:
    """``a`` / ``a, and b`` / ``a, b, and c`` (serial comma even for two items, as the generator does)."""
    if len(items) == 1:
        return items[0]
    return "".join(f"{x}, " for x in items[:-2]) + f"{items[-2]}, and {items[-1]}"


def difference_answer(main: dict, ref: dict) -> str:
    out = []
    for name, e in main["entity"].items():
        r = ref["entity"].get(name)
        if r and e["level"] and r["level"] and e["level"] != r["level"]:
            out.append(f"the level of {name} has changed from {' '.join(r['level'])} to {' '.join(e['level'])}. ")
    added = [n for n in main["entity"] if n not in ref["entity"]]
    missing = [n for n in ref["entity"] if n not in main["entity"]]
    if added:
        if len(added) == 1:
            out.append(f"the main image has an additional finding of {added[0]} than the reference image. ")
        else:
            out.append(f"the main image has additional findings of {_series(added)} than the reference image. ")
    if missing:
        if len(missing) == 1:
            out.append(f"the main image is missing the finding of {missing[0]} than the reference image. ")
        else:
            out.append(f"the main image is missing the findings of {_series(missing)} than the reference image. ")
    return "".join(out) if out else "nothing has changed."


def _loc_phrase(words: list[str]) -> str:
    joined = " ".join(words)
    if joined in ("left", "right"):
        joined += " lung"
    return joined


def pair_questions(rnd: random.Random, main: dict, ref: dict, view: str | None) -> list[tuple[str, str, str]]:
    """(question_type, question, answer) rows of one (main, reference) pair."""
    rows: list[tuple[str, str, str]] = []
    ents = main["entity"]
    names = list(ents)
    neg = main["no_entity"]

    # abnormality
    k = rnd.randrange(3)
    if k == 0 and names:
        rows.append(("abnormality", "what abnormalities are seen in this image?", ", ".join(names)))
    elif k == 1 and any(ents[n]["post_location"] for n in names):
        n = rnd.choice([n for n in names if ents[n]["post_location"]])
        rows.append(("abnormality", f"what abnormalities are seen in {ents[n]['post_location']}?", n))
    elif k == 2:
        rows.append(("abnormality", "is there evidence of any abnormalities in this image?", "yes" if names else "no"))

    # presence
    if names or neg:
        k = rnd.randrange(3)
        if k < 2:
            if names and rnd.random() < 0.5:
                d, ans = rnd.choice(names), "yes"
            elif neg and rnd.random() < 0.5:
                d, ans = rnd.choice(neg), "no"
            else:
                d = rnd.choice(OFFICIAL)
                ans = "yes" if d in ents else "no"
            q = f"is there evidence of {d} in this image?" if k == 0 else f"is there {d}?"
            rows.append(("presence", q, ans))
        else:
            located = [n for n in names if ents[n]["location"]]
            if located:
                d = rnd.choice(located)
                words = ents[d]["location"]
                if rnd.random() < 0.5:
                    if words == ["bilateral"]:
                        rows.append(("presence", f"is the {d} bilateral?", "yes"))
                    else:
                        rows.append(("presence", f"is there {d} in the {_loc_phrase(words)} area?", "yes"))
                else:
                    flipped = [_FLIP.get(w, w) for w in words]
                    if flipped != words:
                        rows.append(("presence", f"is there {d} in the {' '.join(flipped)} area?", "no"))

    # view
    if view in FRONTAL and (view == "postero-anterior" or rnd.random() < 0.05):
        v = "PA" if view == "postero-anterior" else "AP"
        if rnd.random() < 0.5:
            rows.append(("view", "which view is this image taken?", f"{v} view"))
        elif rnd.random() < 0.5:
            rows.append(("view", "is this PA view?", "yes" if v == "PA" else "no"))
        else:
            rows.append(("view", "is this AP view?", "yes" if v == "AP" else "no"))

    # location
    located = [n for n in names if ents[n]["location"] and not {"left", "right"} <= set(ents[n]["location"])]
    if located:
        d = rnd.choice(located)
        words = ents[d]["location"]
        k = rnd.randrange(3)
        if k < 2:
            q = f"where in the image is the {d} located?" if k == 0 else f"where is the {d}?"
            ans = ents[d]["post_location"] if ents[d]["post_location"] and rnd.random() < 0.3 else f"{' '.join(words)} area"
            rows.append(("location", q, ans))
        elif "left" in words or "right" in words:
            side = "left" if "left" in words else "right"
            rows.append(("location", f"is the {d} located on the left side or right side?", f"{side} side"))

    # level
    leveled = [n for n in names if ents[n]["level"]]
    if leveled:
        d = rnd.choice(leveled)
        rows.append(("level", f"what level is the {d}?", " ".join(ents[d]["level"])))

    # type
    typed = [n for n in names if ents[n]["type"]]
    if typed:
        d = rnd.choice(typed)
        rows.append(("type", f"what type is the {d}?", " ".join(ents[d]["type"])))

    rows.append(("difference", "what has changed compared to the reference image?", difference_answer(main, ref)))
    seen, out = set(), []
    for r in rows:  # duplicate question strings within a pair are skipped
        if r[1] not in seen:
            seen.add(r[1])
            out.append(r)
    return out
