"""Loading and validating the pipeline configuration.

``schemas/config.schema.yaml`` is the top-level JSON Schema (written as YAML); each stage's section
is described in its own file under ``schemas/config/`` and referenced with ``$ref``. Validation
fills in the schema's defaults, so the resolved config is complete and can be dumped for provenance.
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


def validate_config(config: dict, schema_dir: str | Path = SCHEMA_DIR) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ``ConfigError``."""
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
    return config


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config, apply nested ``overrides``, validate and return it."""
    config = _load_yaml(Path(path)) or {}
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
