"""The crediting inputs from the raw objects, shared by every asset that credits deals (credited
bookings, the open pipeline, the win-rate fit)."""

import dagster as dg
import polars as pl

from quota_platform.lib.attainment.crediting import CreditInputs
from quota_platform.lib.core.quota_types import org_quota_types
from quota_platform.resources import RulesResource

# the raw objects crediting reads beside the opportunities, as asset inputs
CREDIT_OBJECTS = dict(
    raw_user=dg.AssetIn(), raw_forecasting_type=dg.AssetIn(), raw_forecasting_quota=dg.AssetIn(),
    raw_opportunity_split=dg.AssetIn(), raw_opportunity_split_type=dg.AssetIn(),
    raw_opportunity_line_item=dg.AssetIn(), raw_product2=dg.AssetIn(), raw_dated_conversion_rate=dg.AssetIn(),
)


def credit_inputs(rules: RulesResource, raw: dict[str, pl.DataFrame]) -> CreditInputs:
    """``raw``: the CREDIT_OBJECTS frames by asset name (other keys are ignored)."""
    return CreditInputs(
        users=raw["raw_user"],
        splits=raw["raw_opportunity_split"],
        split_types=raw["raw_opportunity_split_type"],
        line_items=raw["raw_opportunity_line_item"],
        products=raw["raw_product2"],
        quota_types=org_quota_types(raw["raw_forecasting_type"]),
        quota_families=raw["raw_forecasting_quota"]["ProductFamily"].drop_nulls().unique().sort().to_list(),
        rates=raw["raw_dated_conversion_rate"],
        rules=rules.rules(),
    )
