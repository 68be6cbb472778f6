"""Loading and validating the pipeline configuration.

``schemas/config.schema.yaml`` is the top-level JSON Schema (written as YAML); each stage's section
is described in its own file under ``schemas/config/`` and referenced with ``$ref``. Validation
fills in the schema's defaults, so the resolved config is complete and can be dumped for provenance.

Rules that tie several keys together (``CROSS_FIELD_RULES``: one value per pyramid level, the
model's factor-8 resolution, evaluated splits that inference edits, ...) are checked at load time
too, so a config that cannot run fails before the first job starts, with every problem listed.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from instructx2x.core.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO_ROOT / "schemas"


class ConfigError(InputError):
    """The configuration does not match ``schemas/config.schema.yaml``."""


def _load_yaml(path: Path):
    with open(path) as fh:
        return yaml.safe_load(fh)


def _registry(schema_dir: Path) -> Registry:
    def retrieve(uri: str) -> Resource:
        path = (schema_dir / uri).resolve()
        return Resource.from_contents(_load_yaml(path), default_specification=DRAFT202012)

    return Registry(retrieve=retrieve)


def _extend_with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "$ref" in sub and name not in instance:
                    resolved = validator._resolver.lookup(sub["$ref"]).contents
                    if "default" in resolved:
                        instance[name] = _copy(resolved["default"])
                    elif resolved.get("type") == "object":
                        instance[name] = {}
                elif "default" in sub and name not in instance:
                    instance[name] = _copy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _copy(value):
    return yaml.safe_load(yaml.safe_dump(value))


PYRAMID_KEYS = ("smoothing_sigmas", "samples", "learning_rates", "min_steps", "iterations", "level_histogram_bins")


def _is_grid(values) -> bool:
    """An odd number of evenly spaced increasing values (a single value is a grid)."""
    v = [float(x) for x in values]
    if len(v) % 2 == 0:
        return False
    if len(v) == 1:
        return True
    step = (v[-1] - v[0]) / (len(v) - 1)
    return step > 0 and all(abs((b - a) - step) <= 1e-9 * max(1.0, abs(step)) for a, b in zip(v, v[1:]))


def _rules_registration(config: dict) -> list[str]:
    reg = config.get("registration") or {}
    problems = []
    levels = reg.get("shrink_factors")
    if isinstance(levels, list):
        for key in PYRAMID_KEYS:
            values = reg.get(key)
            if isinstance(values, list) and len(values) != len(levels):
                problems.append(
                    f"registration.{key}: {len(values)} value(s) {values}, but shrink_factors has {len(levels)} "
                    f"pyramid level(s) {levels}; expected one value per level"
                )
    for key in ("start_angles_deg", "start_scales"):
        values = reg.get(key)
        if isinstance(values, list) and values and not _is_grid(values):
            problems.append(f"registration.{key}: {values}; expected an odd number of evenly spaced increasing values (a grid)")
    angles, scales, refine = reg.get("start_angles_deg"), reg.get("start_scales"), reg.get("refine_starts")
    if isinstance(angles, list) and isinstance(scales, list) and isinstance(refine, int) and refine > len(angles) * len(scales):
        problems.append(f"registration.refine_starts: {refine}, but the start grid has only "
                        f"{len(angles)} x {len(scales)} = {len(angles) * len(scales)} point(s)")
    res = reg.get("resolution")
    if isinstance(res, int) and res % 8:
        problems.append(f"registration.resolution: {res}; expected a multiple of 8 (the model's latents are 1/8 of "
                        "the working resolution), e.g. 128 or 512")
    return problems


def _rules_splits(config: dict) -> list[str]:
    problems = []
    inferred = (config.get("inference") or {}).get("splits")
    evaluated = (config.get("evaluation") or {}).get("splits")
    if isinstance(inferred, list) and isinstance(evaluated, list):
        absent = [s for s in evaluated if s not in inferred]
        if absent:
            problems.append(f"evaluation.splits: {absent} not edited by inference (inference.splits is {inferred}); "
                            "expected evaluated splits to be a subset of inference.splits")
    fractions = (config.get("instructions") or {}).get("fractions")
    if isinstance(fractions, dict) and fractions and sum(float(v) for v in fractions.values()) <= 0:
        problems.append(f"instructions.fractions: {fractions}; expected at least one positive fraction")
    return problems


def _rules_masks(config: dict) -> list[str]:
    res = (config.get("masks") or {}).get("resolution")
    if isinstance(res, int) and res % 8:
        return [f"masks.resolution: {res}; expected null (the working resolution) or a multiple of 8"]
    return []


def _rules_training(config: dict) -> list[str]:
    tr = config.get("training") or {}
    if tr.get("prediction_base") == "image" and tr.get("prediction_type") != "sample":
        return [f"training.prediction_base: image, but training.prediction_type is {tr.get('prediction_type')!r}; "
                "expected sample (the UNet predicts the clean latent's change from the input image's latent)"]
    return []


CROSS_FIELD_RULES = (_rules_registration, _rules_splits, _rules_masks, _rules_training)


def cross_field_problems(config: dict) -> list[str]:
    """Every broken rule between keys (each one line naming the keys and what was expected)."""
    return [p for rule in CROSS_FIELD_RULES for p in rule(config)]


def validate_config(config: dict, schema_dir: str | Path = SCHEMA_DIR) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ``ConfigError``."""
    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a mapping of keys (YAML), got {type(config).__name__}")
    schema_dir = Path(schema_dir)
    schema = _load_yaml(schema_dir / "config.schema.yaml")
    validator_cls = _extend_with_defaults(jsonschema.Draft202012Validator)
    validator = validator_cls(schema, registry=_registry(schema_dir))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  {where}: {err.message}")
        raise ConfigError("config does not match schemas/config.schema.yaml:\n" + "\n".join(lines))
    problems = cross_field_problems(config)
    if problems:
        raise ConfigError("config is inconsistent (rules across keys, checked at load):\n" + "\n".join(f"  {p}" for p in problems))
    return config


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config, apply nested ``overrides``, validate and return it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; expected a YAML file such as the repository's config.yaml")
    try:
        config = _load_yaml(path) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(config).__name__}")
    if overrides:
        deep_update(config, overrides)
    return validate_config(config)


def deep_update(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base
