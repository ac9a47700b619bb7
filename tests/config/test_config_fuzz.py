"""Property-based tests of the config schema: every leaf field refuses every kind of invalid
value with exit status 2, a message naming the field, and no traceback."""

from __future__ import annotations

import json
import math
import typing
import uuid
from pathlib import Path

import annotated_types as at
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from rewardlab.cli.main import main
from rewardlab.config import TrainConfig

#: Fields whose invalid values come from outside their type (checked by name).
STRINGS_REFUSED = {
    "algorithm": ["dqn", "PEBBLE", ""],
    "teacher.preset": ["grumpy", "", "oracle2"],
    "human.scripted": ["grumpy", "human", ""],
    "human.on_timeout": ["later", ""],
    "human.host": [""],
    "env.id": [""],
    "teacher_bias": ["nope", ""],
    "store_url": ["feedback.db", "", "://x", "postgres//host/db"],
}
#: teacher.beta: inf means a perfectly rational teacher, so only NaN and -inf are refused.
INF_ALLOWED = {"teacher.beta"}


def _leaves(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaves(ann, f"{path}.")
        else:
            yield path, field


def _unwrap(ann):
    """(kind, literal values, element field) of an annotation, Optional removed."""
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    origin = typing.get_origin(ann)
    if origin is typing.Union or (origin is not None and type(None) in typing.get_args(ann)):
        return _unwrap(args[0])
    if origin is typing.Literal:
        return "literal", typing.get_args(ann), None
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(ann)[0])
    if origin is tuple:
        return "tuple", (), typing.get_args(ann)[0]
    if origin is dict:
        return "dict", (), None
    return {bool: "bool", int: "int", float: "float", str: "str"}[ann], (), None


def _bounds(metadata) -> dict[str, float]:
    out = {}
    for m in metadata:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(at, key.capitalize())):
                out[key] = getattr(m, key)
    return out


def _element_metadata(elem) -> list:
    meta = []
    while typing.get_origin(elem) is typing.Annotated:
        args = typing.get_args(elem)
        for a in args[1:]:
            meta.extend(getattr(a, "metadata", []) or [a])
        elem = args[0]
    return meta


def _number_invalid(kind: str, bounds: dict[str, float], path: str) -> st.SearchStrategy:
    options: list[st.SearchStrategy] = [st.booleans(), st.just("abc"), st.just([1]),
                                        st.just({"a": 1})]
    if "ge" in bounds:
        options.append(st.integers(max_value=int(math.ceil(bounds["ge"])) - 1,
                                   min_value=int(bounds["ge"]) - 10**6))
    if "gt" in bounds:
        options.append(st.floats(max_value=bounds["gt"], min_value=bounds["gt"] - 1e6,
                                 allow_nan=False))
    if "le" in bounds:
        options.append(st.integers(min_value=int(bounds["le"]) + 1,
                                   max_value=int(bounds["le"]) * 10 + 10))
    if "lt" in bounds:
        options.append(st.floats(min_value=bounds["lt"], max_value=bounds["lt"] + 1e6,
                                 allow_nan=False))
    if kind == "int":
        options += [st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                    st.floats(min_value=0.01, max_value=0.99).map(lambda f: 7 + f)]
    else:
        options.append(st.just(math.nan))
        options.append(st.just(-math.inf))
        if path not in INF_ALLOWED:
            options.append(st.just(math.inf))
    return st.one_of(options)


def invalid_values(path: str, field) -> st.SearchStrategy:
    kind, literals, elem = _unwrap(field.annotation)
    if path in STRINGS_REFUSED:
        return st.one_of(st.sampled_from(STRINGS_REFUSED[path]), st.just([1]),
                         st.just({"x": 1}), st.integers(0, 10))
    if kind in {"int", "float"}:
        return _number_invalid(kind, _bounds(field.metadata), path)
    if kind == "bool":
        return st.one_of(st.integers(0, 3), st.just("true"), st.just("yes"), st.floats(0, 1),
                         st.just([True]))
    if kind == "literal":
        return st.one_of(st.text(min_size=1, max_size=8).filter(lambda s: s not in literals),
                         st.integers(), st.just([literals[0]]))
    if kind == "tuple":
        if elem is str:
            return st.one_of(st.just(7), st.just({"a": 1}), st.lists(st.integers(), min_size=1))
        el_bounds = _bounds(_element_metadata(elem))
        bad = st.one_of(st.booleans(), st.just(0), st.just(-3), st.just("wide"),
                        st.integers(min_value=int(el_bounds.get("le", 65536)) + 1,
                                    max_value=10**9), st.just(1.5))
        return st.one_of(
            st.tuples(bad).map(list), st.tuples(st.just(64), bad).map(list), st.just(5),
            st.just("64, 64"),
        )
    if kind == "dict":
        return st.one_of(st.integers(), st.just([1, 2]), st.just("a=1"))
    if kind == "str":
        return st.one_of(st.integers(), st.just([1]), st.just({"a": 1}), st.booleans())
    raise AssertionError(f"{path}: no strategy for {kind}")


def as_yaml(value) -> str:
    """``--set`` text that YAML reads back as ``value``."""
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return json.dumps(value)


LEAVES = dict(_leaves(TrainConfig))
FIELD_VALUES = st.sampled_from(sorted(LEAVES)).flatmap(
    lambda path: st.tuples(st.just(path), invalid_values(path, LEAVES[path])))


def _check(argv: list[str], field: str, capsys) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())  # rich wraps long lines
    assert code == 2, (argv, captured.out[:200], err)
    assert "Traceback" not in err
    assert field in err, (argv, err)


def test_every_leaf_field_has_invalid_values():
    assert len(LEAVES) > 70
    for path, field in LEAVES.items():
        invalid_values(path, field)  # a strategy exists for each


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(FIELD_VALUES)
def test_config_refuses_invalid_values_naming_the_field(capsys, field_value):
    field, value = field_value
    _check(["config", "--set", f"{field}={as_yaml(value)}"], field, capsys)


@pytest.mark.parametrize("field", sorted(LEAVES))
def test_every_field_is_fuzzed(capsys, field):
    """One invalid example of each field, so no field is left to chance."""
    value = _first_invalid(field)
    _check(["config", "--set", f"{field}={as_yaml(value)}"], field, capsys)


def _first_invalid(field: str):
    kind, _, _ = _unwrap(LEAVES[field].annotation)
    if field in STRINGS_REFUSED:
        return STRINGS_REFUSED[field][0]
    return {"int": True, "float": math.nan, "bool": 2, "literal": "nope", "tuple": "x",
            "dict": 3, "str": 5}[kind]


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(FIELD_VALUES)
def test_train_refuses_before_creating_the_run_dir(tmp_path, capsys, field_value):
    field, value = field_value
    run_dir: Path = tmp_path / uuid.uuid4().hex
    _check(["train", "--run-dir", str(run_dir), "--set", f"{field}={as_yaml(value)}"], field,
           capsys)
    assert not run_dir.exists()


YAML_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["!!python/object:os.system", "&a [*a]", "*undefined", "{a: 1, a: 2}",
                     "[1, [2, [3]]]", "? [a]: 1", "!!binary aGk=", "2001-12-14", "0x1F", "0o17",
                     "1_000", "~", "'", "{", "-", ": x", "|\n  a", "!!float 1e400", "1e400"]),
)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.sampled_from(sorted(LEAVES)), st.text(min_size=1, max_size=12)), YAML_TEXT)
def test_config_never_raises_on_any_override(capsys, key, text):
    code = main(["config", f"--set={key}={text}"])
    captured = capsys.readouterr()
    assert code in (0, 2), captured.err
    assert "Traceback" not in captured.err


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=40),
    st.lists(st.tuples(st.sampled_from(sorted(LEAVES)), YAML_TEXT), max_size=4).map(
        lambda items: "".join(f"{k}: {v}\n" for k, v in items).encode()),
))
def test_config_files_never_crash(tmp_path, capsys, content):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content)
    code = main(["config", str(path)])
    captured = capsys.readouterr()
    assert code in (0, 2) and "Traceback" not in captured.err
    if code == 2 and "invalid config" not in captured.err:
        assert "fuzz.yaml" in " ".join(captured.err.split())
