"""One raw asset per Salesforce object: the object as extracted now, typed by the contract.

A missing required object or column, a value that does not parse or a duplicate Id fails the
asset with a message naming the object, the record and the field (``ContractError``)."""


import re

import dagster as dg

from quota_platform.defs.validation import SCHEMA_CHECK, Table, definition_metadata, publish
from quota_platform.lib.core.contract import OBJECTS, ContractError
from quota_platform.lib.schemas import raw_object_schema
from quota_platform.resources import CrmSource

GROUP = "salesforce_raw"


def raw_asset_name(object_name: str) -> str:
    """``OpportunityLineItem`` -> ``raw_opportunity_line_item``."""
    return "raw_" + re.sub(r"(?<!^)(?=[A-Z])", "_", object_name).lower()


RAW_ASSET = {name: raw_asset_name(name) for name in OBJECTS}


def _raw_asset(object_name: str) -> dg.AssetsDefinition:
    spec = OBJECTS[object_name]
    name = RAW_ASSET[object_name]
    fields = ", ".join(spec.field_names)

    @dg.asset(
        name=name,
        group_name=GROUP,
        kinds={"salesforce", "polars"},
        description=(
            f"The Salesforce {object_name} object as extracted now ({'required' if spec.required else 'optional'}"
            f"; fields {fields}), typed by the data contract."
        ),
        metadata=definition_metadata(raw_object_schema(object_name)),
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=name, blocking=True)],
    )
    def _asset(context: dg.AssetExecutionContext, crm: CrmSource):
        try:
            frame = crm.read_object(object_name)
        except ContractError as exc:
            raise dg.Failure(description=str(exc)) from exc
        context.log.info(f"{object_name}: {frame.height} records from {crm.describe()}")
        yield from publish([Table(name, frame, raw_object_schema(object_name), metadata={"source": crm.describe()})])

    return _asset


raw_assets = [_raw_asset(name) for name in OBJECTS]
