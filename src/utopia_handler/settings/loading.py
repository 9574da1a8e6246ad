"""Reading: the sources, through the table's converters, into one validated, immutable Settings.

The TOML tables are read first, then every variable of the table (a variable beats a table key
filling the same field), then the few values that depend on others are worked out, then the
cross-checks run. A wrong value stops loading with the `SettingsError` of the first one found.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

from utopia_handler.settings.checks import check_conflicts, check_runtime
from utopia_handler.settings.converters import fail, show, to_id
from utopia_handler.settings.schema import PlanMapping, Settings, plan_key
from utopia_handler.settings.sources import (
    ENVIRONMENT,
    Layers,
    Table,
    read_dotenv,
    read_toml,
    split_toml,
)
from utopia_handler.settings.table import (
    ARRAY_TABLES,
    CONFIG_VARIABLE,
    KEYS_OF_TABLE,
    PLANS_TABLE,
    TABLE_KEYS,
    TABLES,
    TOML_VARIABLES,
    VARIABLES,
    Variable,
)

T = TypeVar("T")


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_path: Path | None = None,
    dotenv_path: Path | None = None,
    require_runtime: bool = True,
) -> Settings:
    """Read the environment, `.env` and the TOML file into one validated, immutable Settings."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    dotenv_file = Path.cwd() / ".env" if dotenv_path is None else dotenv_path
    dotenv_values_ = read_dotenv(dotenv_file, env)
    sources = [ENVIRONMENT]
    if dotenv_file.is_file():
        sources.append(str(dotenv_file))

    toml_file, toml_label = config_path, "config file"
    if toml_file is None:
        before_toml = Layers([(ENVIRONMENT, env), (str(dotenv_file), dotenv_values_)])
        [config] = [v for v in VARIABLES if v.name == CONFIG_VARIABLE]
        toml_file, toml_label = _read(before_toml, config), CONFIG_VARIABLE
    document: dict[str, object] = {}
    toml_variables: dict[str, object] = {}
    if toml_file is not None:
        document = read_toml(toml_file, toml_label)
        toml_variables = split_toml(
            document,
            toml_file,
            variables=TOML_VARIABLES,
            tables=TABLES,
            arrays=[array.name for array in ARRAY_TABLES],
        )
        sources.append(str(toml_file))

    layers = Layers(
        [
            (ENVIRONMENT, env),
            (str(dotenv_file), dotenv_values_),
            (str(toml_file), toml_variables),
        ]
    )
    values: dict[str, object] = {"sources": tuple(sources)}  # dotted field -> typed value
    given: dict[str, object] = {}  # variable name or "[table] key" -> typed value
    plans = _read_tables(document, toml_file, values, given)
    for variable in VARIABLES:
        if not variable.fills:
            continue
        value = _read(layers, variable)
        if value is not None:
            given[variable.name] = value
            if not variable.combines:
                values[variable.fills] = value
    _work_out(values, given, plans)
    settings = _assemble(Settings, values, "")
    check_conflicts(settings)
    if require_runtime:
        check_runtime(settings)
    return settings


def _read(layers: Layers, variable: Variable) -> Any:
    """A variable's typed value; None when unset (or blank, unless it is a secret)."""
    found = layers.find(variable.name) if variable.secret else layers.given(variable.name)
    return None if found is None else variable.convert(*found)


def _read_tables(
    document: Mapping[str, object],
    path: Path | None,
    values: dict[str, object],
    given: dict[str, object],
) -> tuple[PlanMapping, ...]:
    """The values the TOML tables set (variables read afterwards may replace them); the plans."""
    origin = str(path)
    plans = Table(document, PLANS_TABLE, origin, KEYS_OF_TABLE[PLANS_TABLE])
    seen: dict[str, str] = {}
    mappings: list[PlanMapping] = []
    for text, raw in plans.items():
        label = plans.label(text)
        if not text.strip():
            fail(label, "plan text is empty", "write the plan text exactly as UTOPIA sends it")
        key = plan_key(text)
        if key in seen:
            fail(
                label,
                f"is the same plan as {show(seen[key])} (case and spaces are ignored)",
                "keep one of them",
            )
        seen[key] = text
        mappings.append(PlanMapping(text.strip(), to_id(label, raw)))

    tables = {name: Table(document, name, origin, KEYS_OF_TABLE[name]) for name in TABLES[1:]}
    for entry in TABLE_KEYS:
        found = tables[entry.table].find(entry.key)
        if found is None:
            continue
        value = entry.convert(*found)
        if entry.relative_to_file and path is not None and not Path(str(value)).is_absolute():
            # Next to the TOML file, so the config and its templates can move together; the
            # TICKET_TEMPLATE_DIR variable stays relative to the working directory.
            value = Path(os.path.abspath(path.parent / str(value)))
        given[f"[{entry.table}] {entry.key}"] = value
        if not entry.combines:
            values[entry.fills] = value
    for array in ARRAY_TABLES:
        if array.name in document:
            values[array.fills] = array.convert(
                f"[[{array.name}]] (in {origin})", document[array.name]
            )
    return tuple(mappings)


def _work_out(
    values: dict[str, object], given: Mapping[str, Any], table_plans: tuple[PlanMapping, ...]
) -> None:
    """Fill the fields whose default depends on other settings, and combine old with new."""
    data_dir = values.setdefault("data_dir", Path(os.path.abspath("data")))
    assert isinstance(data_dir, Path)
    values.setdefault("database_url", f"sqlite:///{data_dir / 'utopia-handler.db'}")
    values.setdefault("log_file", data_dir / "api_class.log")

    # PowerCode's web address and its two APIs each default from the other.
    web_url = str(values.get("powercode.web_url", ""))
    api_url = str(values.get("powercode.api_url", ""))
    if not web_url and api_url:
        parts = urlsplit(api_url)
        web_url = values["powercode.web_url"] = f"{parts.scheme}://{parts.netloc}"
    if web_url:
        values.setdefault("powercode.api_url", f"{web_url}/api/1/index.php")
        values.setdefault("powercode.uapi_url", f"{web_url}/uapi/")

    # The old handler's plan variables replace the id of the same plan in [plans], or add it.
    plans = list(table_plans)
    for variable in VARIABLES:
        legacy = given.get(variable.name) if variable.fills == "provisioning.plans" else None
        if legacy is None:
            continue
        for index, known in enumerate(plans):
            if plan_key(known.utopia_text) == plan_key(legacy.utopia_text):
                plans[index] = PlanMapping(known.utopia_text, legacy.service_id)
                break
        else:
            plans.append(legacy)
    values["provisioning.plans"] = tuple(plans)

    # Always-added services: the TOML list (with quantities), then the old bond fee variable.
    listed: tuple[tuple[int, int], ...] = given.get("[provisioning] always_add_services", ())
    always = tuple(service_id for service_id, _ in listed)
    quantities = {service_id: quantity for service_id, quantity in listed if quantity != 1}
    fee = given.get("SERVICE_PLAN_BOND_FEE_ID")
    fee_quantity = given.get("SERVICE_PLAN_BOND_FEE_QUANTITY", 1)
    if fee is not None and fee not in always:
        always = (*always, fee)
    if fee is not None and fee_quantity != 1:
        quantities[fee] = fee_quantity
    values["provisioning.always_services"] = always
    values["provisioning.service_quantities"] = tuple(sorted(quantities.items()))

    # As before: a shared portal password given means "shared" unless [portal] says otherwise.
    if "provisioning.portal.password" not in values:
        shared = values.get("provisioning.portal.shared_password")
        values["provisioning.portal.password"] = "shared" if shared else "random"


def _assemble(cls: type[T], values: Mapping[str, object], prefix: str) -> T:
    """A dataclass (and its nested parts) from dotted field values; defaults for the rest."""
    hints = get_type_hints(cls)
    arguments: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        path = f"{prefix}{item.name}"
        kind = hints[item.name]
        if isinstance(kind, type) and is_dataclass(kind):
            arguments[item.name] = _assemble(kind, values, f"{path}.")
        elif path in values:
            arguments[item.name] = values[path]
    return cls(**arguments)
