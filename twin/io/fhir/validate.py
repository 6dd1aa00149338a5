"""Validation of FHIR resources with the ``fhir.resources`` **R4B** models.

Only resources that twin maps are validated (see :data:`USED_TYPES`); every
other type is counted and skipped without validation cost.

Two ways to validate, both with the library's own models:

``"full"``
    ``Model.model_validate(resource)`` for every resource.
``"cached"`` (the default, same verdicts, several times faster)
    ``fhir.resources`` spends most of its time in per-model Python validators
    whose outcome depends only on *which keys are present* (unknown keys,
    required elements, one-of-many choices, nulls in lists) plus the value of
    each field on its own.  So a resource is fully validated with
    ``Model.model_validate`` the first time its *shape* (model, keys, which
    values are null) is seen; after that, a resource of the same shape is
    validated field by field: every primitive value against the model field's
    own type (a :class:`pydantic.TypeAdapter` of the field annotation and
    metadata), every complex value recursively the same way, memoised on its
    exact content (identical ``code`` / ``subject`` / ``category`` elements
    are checked once).  Anything unusual (keys given by Python field name,
    contained resources, non-dict elements, a field that fails) falls back to
    the full ``Model.model_validate`` call, whose error message is the one
    reported.  Tests check that both modes accept and reject the same inputs.
"""

from __future__ import annotations

import importlib.util
import typing
from functools import cache
from pathlib import Path

import orjson
from pydantic import TypeAdapter, ValidationError

#: Resource types twin maps onto a cohort (validated); all others are skipped unvalidated.
USED_TYPES: frozenset[str] = frozenset(
    {
        "Patient",
        "Observation",
        "Condition",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Medication",
        "Procedure",
        "Immunization",
        "ImagingStudy",
        "MolecularSequence",
        "DiagnosticReport",
    }
)

VALIDATION_MODES = ("cached", "full", "none")
_CACHE_LIMIT = 400_000  # entries per memo table before it is cleared (memory bound)


@cache
def model_class(resource_type: str) -> type | None:
    """The R4B model class of a resource type, or None if R4B has no such resource."""
    from fhir.resources.R4B import get_fhir_model_class

    if not resource_type.isidentifier() or not resource_type[:1].isupper():
        return None
    try:
        klass = get_fhir_model_class(resource_type)
    except (ValueError, ImportError, AttributeError):
        return None
    return klass if klass.has_resource_base() else None


@cache
def is_r4b_resource_type(resource_type: str) -> bool:
    """Whether R4B defines a resource of this type (R5-only types are unknown).

    Answered from the model's source file, without importing (and building) the model:
    unused types such as Claim would otherwise cost ~0.5 s per process.
    """
    if not resource_type.isidentifier() or not resource_type[:1].isupper():
        return False
    spec = importlib.util.find_spec(f"fhir.resources.R4B.{resource_type.lower()}")
    if spec is None:
        return False
    try:
        source = Path(spec.origin).read_text(encoding="utf-8")
    except (OSError, TypeError):  # no plain source file: import the model instead
        return model_class(resource_type) is not None
    return any(
        f"class {resource_type}({base})" in source
        for base in ("domainresource.DomainResource", "resource.Resource")
    )


def describe_error(resource_type: str, exc: ValidationError, limit: int = 3) -> str:
    """A one-line summary of a pydantic validation error (first ``limit`` problems)."""
    parts = []
    errors = exc.errors(include_url=False)
    for err in errors[:limit]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = " ".join(str(err.get("msg", "")).split())
        value = err.get("input")
        if isinstance(value, (str, int, float, bool)):  # the offending value, shortened
            shown = repr(value)
            msg += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
        parts.append(f"{resource_type}.{loc}: {msg}" if loc else f"{resource_type}: {msg}")
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


class R4BValidator:
    """Validate resources against the R4B models (see the module docstring for the modes).

    Parameters
    ----------
    mode
        ``"cached"`` (default), ``"full"`` or ``"none"``.
    """

    def __init__(self, mode: str = "cached"):
        if mode not in VALIDATION_MODES:
            raise ValueError(f"validation mode must be one of {VALIDATION_MODES}, got {mode!r}")
        self.mode = mode

    def validate(self, resource: dict) -> str | None:
        """Return None if ``resource`` is valid R4B, else a readable reason."""
        rtype = resource.get("resourceType")
        klass = model_class(rtype) if isinstance(rtype, str) else None
        if klass is None:
            return f"R4B has no resource type {rtype!r}"
        if self.mode == "none":
            return None
        try:
            if self.mode == "full" or not _shape_check(klass, resource):
                klass.model_validate(resource)
        except ValidationError as exc:
            return "not valid FHIR R4B: " + describe_error(rtype, exc)
        except (ValueError, TypeError) as exc:  # raised by some fhir.resources validators
            return f"not valid FHIR R4B: {rtype}: {' '.join(str(exc).split())}"
        return None


# ---------------------------------------------------------------------- memoised path
class _FieldCheck:
    """How to check one element of one model, with the values already proven valid."""

    __slots__ = ("target", "is_list", "adapter", "seen")

    def __init__(self, target: type | None, is_list: bool, adapter: TypeAdapter | None):
        self.target = target  # complex element: its model class
        self.is_list = is_list
        self.adapter = adapter  # primitive element: the field's own type
        self.seen: set = set()  # JSON bytes (complex) or values (primitive) known valid


_RESOURCE_TYPE_KEY = None  # plan entry of the "resourceType" key (checked by value)
_plans: dict[tuple[type, tuple[str, ...]], tuple | bool] = {}
_checks: dict[tuple[type, str], _FieldCheck | None] = {}
_memo_size = 0


def clear_caches() -> None:
    """Forget every memoised shape, element and value (benchmarks start cold with this)."""
    global _memo_size
    _plans.clear()
    _checks.clear()
    _memo_size = 0


def _complex_type(annotation: object) -> tuple[type | None, bool]:
    """(fhir_core FhirBase subtype, is_list) of a field annotation, or (None, False)."""
    from fhir_core.types import FhirBase

    origin = typing.get_origin(annotation)
    if origin is None:
        if isinstance(annotation, type) and issubclass(annotation, FhirBase):
            return annotation, False
        return None, False
    is_list = origin is list
    for arg in typing.get_args(annotation):
        found, inner_list = _complex_type(arg)
        if found is not None:
            return found, is_list or inner_list
    return None, False


def _field_check(klass: type, key: str) -> _FieldCheck | None:
    """The check of ``klass``'s element ``key`` (by JSON name); None: not supported here."""
    if (klass, key) in _checks:
        return _checks[(klass, key)]
    from fhir_core.types import FhirElementOrResourceBase

    check = None
    for name, field in klass.model_fields.items():
        if (field.alias or name) != key:
            continue
        ftype, is_list = _complex_type(field.annotation)
        if ftype is not None and issubclass(ftype, FhirElementOrResourceBase):
            check = None  # contained resources: always the full model
        elif ftype is not None:
            check = _FieldCheck(ftype.get_model_klass(), is_list, None)
        else:
            ann = (
                typing.Annotated[(field.annotation, *field.metadata)]
                if field.metadata
                else field.annotation
            )
            check = _FieldCheck(None, False, TypeAdapter(ann))
        break
    _checks[(klass, key)] = check
    return check


def _plan(klass: type, keys: tuple[str, ...]) -> tuple | bool:
    """Per key, its check; False if some key needs the full model (unknown, contained)."""
    plan = []
    for key in keys:
        if key in ("resourceType", "resource_type"):
            plan.append(_RESOURCE_TYPE_KEY)
            continue
        check = _field_check(klass, key)
        if check is None:
            return False
        plan.append(check)
    return tuple(plan)


def _remember(check: _FieldCheck, value: object) -> None:
    global _memo_size
    _memo_size += 1
    if _memo_size > _CACHE_LIMIT:  # bound memory: start over
        for c in _checks.values():
            if c is not None:
                c.seen.clear()
        _memo_size = 0
    check.seen.add(value)


def _shape_check(klass: type, resource: dict) -> bool:
    """:func:`_valid_by_shape`, False where it raises: a nested element's model names
    the problem relative to that element, so the full model is run for the whole path."""
    try:
        return _valid_by_shape(klass, resource)
    except (ValidationError, ValueError, TypeError):
        return False


def _valid_by_shape(klass: type, data: object) -> bool:
    """True if ``data`` is proven valid for ``klass``; False means "run the full model".

    The first dict of a shape (model + keys, no nulls) is validated by the model itself;
    later ones element by element against the same model's field types.
    """
    if type(data) is not dict:
        return False
    keys = tuple(data)
    plan = _plans.get((klass, keys))
    if plan is None:
        klass.model_validate(data)  # raises on invalid data
        if None not in data.values():
            _plans[(klass, keys)] = _plan(klass, keys)
        return True
    if plan is False:
        return False
    for value, check in zip(data.values(), plan, strict=True):
        if value is None:
            return False
        if check is _RESOURCE_TYPE_KEY:
            if value != klass.__resource_type__:
                return False
            continue
        target = check.target
        if target is not None:
            if check.is_list:
                if type(value) is not list:
                    return False
                items = value
            else:
                items = (value,)
            seen = check.seen
            for item in items:
                if type(item) is not dict:
                    return False
                try:
                    content = orjson.dumps(item)
                except TypeError:  # not JSON data (orjson.JSONEncodeError)
                    return False
                if content in seen:
                    continue
                if not _valid_by_shape(target, item):
                    return False
                _remember(check, content)
        else:
            memo = value if type(value) is str else (type(value), value)
            try:
                if memo in check.seen:
                    continue
            except TypeError:  # unhashable (a list of primitives)
                try:
                    memo = orjson.dumps(value)
                except TypeError:
                    return False
                if memo in check.seen:
                    continue
            try:
                check.adapter.validate_python(value)
            except (ValidationError, ValueError, TypeError):
                return False
            _remember(check, memo)
    return True
