"""The typed-data codec: any frozen-dataclass tree decodes from plain data with one-line fix-it errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest

from mst.config import ConfigError, ModelConfig, apply_overrides, config_from_dict, config_to_dict
from mst.config.codec import DecodeError, WrittenError, decode, dotted_keys, encode, written


@dataclass(frozen=True)
class Shape:
    nodes: int = 1
    """Nodes per job."""
    mem_gb: float = 4.0
    """Memory per node."""


@dataclass(frozen=True)
class Site:
    name: str
    """Required: no default."""
    kind: Literal["cpu", "cuda"] = "cpu"
    """Device family."""
    partition: str | None = None
    """Optional."""
    setup: tuple[str, ...] = ()
    """Shell lines."""
    ks: list[int] = field(default_factory=list)
    """A list."""
    scale: tuple[float, float] = (0.4, 1.0)
    """A pair."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables."""
    exclusive: bool = False
    """A flag."""
    shape: Shape = field(default_factory=Shape)
    """Nested."""


def _error(data, wording=None) -> DecodeError:
    with pytest.raises(DecodeError) as err:
        decode(Site, data, "site.yaml", wording)
    assert "\n" not in str(err.value) and isinstance(err.value, ConfigError)
    return err.value


def test_decode_builds_the_tree_in_canonical_form_and_encode_reverses_it():
    site = decode(Site, {"name": "a", "kind": "cuda", "setup": ["module load x"], "ks": [1, 2], "scale": [0, 1],
                         "env": {"LEVEL": 1, "NAME": "x"}, "shape": {"nodes": 2, "mem_gb": 8}}, "site.yaml")
    assert site == Site("a", "cuda", None, ("module load x",), [1, 2], (0.0, 1.0), {"LEVEL": "1", "NAME": "x"},
                        False, Shape(2, 8.0))
    assert isinstance(site.shape.mem_gb, float) and isinstance(site.scale[0], float)
    plain = encode(site)
    assert plain["setup"] == ["module load x"] and plain["shape"] == {"nodes": 2, "mem_gb": 8.0}
    assert decode(Site, plain, "again") == site
    assert decode(Site, {"name": "b", "partition": None}, "x").partition is None


def test_dotted_keys_walk_nested_dataclasses_in_declaration_order():
    assert dotted_keys(Site) == ["name", "kind", "partition", "setup", "ks", "scale", "env", "exclusive",
                                 "shape.nodes", "shape.mem_gb"]


@pytest.mark.parametrize(("data", "kind", "text"), [
    ({"name": "a", "exclusive": 1}, "type", "site.yaml: 'exclusive' must be true or false, got 1; fix that value"),
    ({"name": "a", "shape": {"nodes": True}}, "type", "'shape.nodes' must be an integer, got True"),
    ({"name": "a", "shape": {"nodes": 2**63}}, "range", "'shape.nodes' is 9223372036854775808, which does not fit"),
    ({"name": "a", "shape": {"mem_gb": float("nan")}}, "finite", "'shape.mem_gb' must be a finite number, got nan"),
    ({"name": "a", "shape": {"mem_gb": 10**400}}, "finite", "'shape.mem_gb' must be a finite number, got 1000"),
    ({"name": "a", "kind": "cdua"}, "option", "'kind' must be one of cpu, cuda, got 'cdua'; did you mean 'cuda'?"),
    ({"name": "a", "kind": "metal"}, "option", "'kind' must be one of cpu, cuda, got 'metal'; fix that value"),
    ({"name": "a", "scale": [0.4]}, "length", "'scale' must be a list of 2 numbers, got 1 values"),
    ({"name": "a", "setup": "module load x"}, "type", "'setup' must be a list of strings, got 'module load x'"),
    ({"name": "a", "env": {"A": True}}, "type", "'env.A' must be a string, got True"),
    ({"name": 3}, "type", "'name' must be a string, got 3"),
    ({"kind": "cpu"}, "missing", "site.yaml: 'name' is missing; add it"),
    ({"name": "a", "shape": 3}, "mapping", "'shape' must be a mapping, got 3; valid keys: shape.nodes, shape.mem_gb"),
    ({"name": "a", "shape": {"node": 2}}, "unknown",
     "site.yaml: unknown key 'shape.node'; did you mean 'nodes'? valid keys: shape.nodes, shape.mem_gb"),
    ({"name": "a", "walltime": 2}, "unknown", "unknown key 'walltime'; valid keys: name, kind, partition, setup"),
    ([1], "mapping", "site.yaml: the top level must be a mapping, got list; valid keys: name, kind"),
])
def test_each_bad_value_is_one_line_naming_the_file_and_key(data, kind, text):
    err = _error(data)
    assert err.kind == kind and text in str(err)


def test_a_front_end_words_its_errors_its_own_way():
    err = _error({"name": "a", "shape": {"node": 2}}, {"unknown": "{where}: no key '{key}'; valid: {valid}{tail}"})
    assert str(err) == "site.yaml: no key 'shape.node'; valid: shape.nodes, shape.mem_gb; did you mean 'nodes'?"
    assert err.key == "shape.node"
    err = _error({"name": "a", "shape": {"node": 2}}, {"unknown": "{where}: unknown key '{key}'; {dotted_hint}end"})
    assert str(err) == "site.yaml: unknown key 'shape.node'; did you mean 'shape.nodes'? end"
    err = _error({"name": "a", "nam": 2}, {"unknown": "{where}: unknown key '{key}'; {dotted_hint}end"})
    assert str(err) == "site.yaml: unknown key 'nam'; did you mean 'name'? end"


def test_configs_decode_through_the_codec():
    assert config_to_dict(config_from_dict({})) == encode(config_from_dict({}))
    assert config_to_dict(config_from_dict({}))["augment"]["global_scale"] == [0.4, 1.0]
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'; valid keys: .*; did you mean 'optim.lr'\?$"):
        apply_overrides(config_from_dict({}), {"optim.lrr": 1.0})
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'; valid keys in 'optim': betas, "):
        config_from_dict({"optim": {"lrr": 1.0}})


def test_a_section_built_in_code_checks_its_options_from_the_literal_type():
    with pytest.raises(ConfigError, match="config key 'model.arch': invalid value 'vit_huge'; choose one of "
                                          "vit_test, vit_smoke, deit_small, vit_base$"):
        ModelConfig(arch="vit_huge")


@dataclass(frozen=True)
class Table:
    name: str
    """A sweep-like file: its axes hold values checked later, where they act."""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Dotted key -> values."""
    notes: dict = field(default_factory=dict)
    """A bare mapping."""


def test_values_typed_any_pass_through_for_a_later_check():
    table = decode(Table, {"name": "t", "grid": {"mask.prob": [0.1, "x"]}, "notes": {"a": [1]}}, "t.yaml")
    assert table.grid == {"mask.prob": [0.1, "x"]} and table.notes == {"a": [1]}
    with pytest.raises(DecodeError, match="'grid.mask.prob' must be a list of values, got 0.5"):
        decode(Table, {"name": "t", "grid": {"mask.prob": 0.5}}, "t.yaml")
    with pytest.raises(DecodeError, match="'notes' must be a mapping of strings to values, got"):
        decode(Table, {"name": "t", "notes": {1: 2}}, "t.yaml")


def _one_or_many(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise WrittenError(f"must be >= 0, got {value}; give a count")
    return [value] if isinstance(value, int) else value


@dataclass(frozen=True)
class Leg:
    counts: tuple[int, ...] = field(metadata=written(_one_or_many))
    """A count, or a list of counts."""

    def __post_init__(self) -> None:
        if sum(self.counts) > 10:
            raise WrittenError(f"counts add up to {sum(self.counts)}; keep them to 10", "counts")


@dataclass(frozen=True)
class Trip:
    legs: tuple[Leg, ...]
    """Legs in order."""


def test_a_written_field_reads_its_looser_form_and_items_are_named_by_index():
    assert decode(Trip, {"legs": [{"counts": 3}, {"counts": [1, 2]}]}, "trip.yaml") == Trip((Leg((3,)), Leg((1, 2))))
    with pytest.raises(DecodeError, match=r"^trip.yaml: 'legs\[1\].counts': must be >= 0, got -1; give a count$"):
        decode(Trip, {"legs": [{"counts": 3}, {"counts": -1}]}, "trip.yaml")
    with pytest.raises(DecodeError, match=r"^trip.yaml: 'legs\[0\].counts': counts add up to 11; keep them to 10$"):
        decode(Trip, {"legs": [{"counts": [5, 6]}]}, "trip.yaml")
    with pytest.raises(DecodeError, match=r"^trip.yaml: 'legs\[0\].counts' must be a list of integers, got 'x'"):
        decode(Trip, {"legs": [{"counts": "x"}]}, "trip.yaml")
    with pytest.raises(DecodeError, match=r"^trip.yaml: unknown key 'legs\[0\].count'; did you mean 'counts'"):
        decode(Trip, {"legs": [{"count": 1}]}, "trip.yaml")


@dataclass(frozen=True)
class Score:
    value: int | float = 0
    """A count or a fraction."""


def test_a_union_of_scalars_takes_the_first_type_that_fits():
    assert [type(decode(Score, {"value": v}, "s").value) for v in (3, 2.5)] == [int, float]
    for bad, text in ((True, "must be an integer or a number, got True"), (float("nan"), "finite number")):
        with pytest.raises(DecodeError, match=text):
            decode(Score, {"value": bad}, "s")


@dataclass(frozen=True)
class Named:
    NAMED_BY: ClassVar[str] = "key"
    key: str
    """Its name in the written mapping."""
    size: int = 0
    """A count."""


@dataclass(frozen=True)
class Catalog:
    items: tuple[Named, ...]
    """Written as a list of mappings that carry their key."""


def test_items_whose_dataclass_names_them_are_named_by_key_in_errors():
    with pytest.raises(DecodeError, match=r"^c: 'items.big.size' must be an integer, got 'x'"):
        decode(Catalog, {"items": [{"key": "big", "size": "x"}]}, "c")
    with pytest.raises(DecodeError, match=r"^c: 'items\[0\].key' must be a string"):  # no named key: its index
        decode(Catalog, {"items": [{"key": 3}]}, "c")
