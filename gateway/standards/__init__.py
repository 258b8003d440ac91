"""The regulatory tables and pure rules the gateway applies (spec/standards.md).

No I/O, no clock, no state: every function takes the rule set or generation it applies
by name, so historical data keep their old rules and new data get the new ones.

=============  ==========================================================================
module         what, from which standard
=============  ==========================================================================
``aqi``        IAQI/AQI, levels, primary pollutants: HJ 633-2012 and HJ 633-2026 (§3)
``limits``     GB 3095-2012/-2026 limit sets, exceedance; GB 37822/GB 16297 site thresholds
``rulesets``   data validity: GB 3095 / HJ 663 (2013, 2026), EU 2008/50/EC, US EPA (§2)
``stats``      HJ 663 percentile and annual assessment statistics (§2)
``warnings``   heavy-pollution warning levels and the plan's emission cuts (§7)
``plan``       the district plan's targets and progress toward them (§8)
=============  ==========================================================================

Numbers marked UNCONFIRMED in the spec are configurable and flagged as such where they
appear (``RuleSet.unconfirmed``, ``SiteThreshold.confirmed``,
``AnnualStatistics.percentile_confirmed``).

The public surface is listed once, here.
"""

from ._common import InvalidValueError, StandardsError, UnknownNameError, round_half_even
from .aqi import (
    AQI_LEVELS,
    DAILY_INDICATORS,
    GENERATIONS,
    HJ633_2012,
    HJ633_2026,
    HOURLY_INDICATORS,
    INDICATORS,
    AqiLevel,
    AqiResult,
    BreakpointTable,
    FallbackRequiredError,
    IaqiResult,
    aqi_level,
    breakpoint_table,
    count_good_days,
    daily_aqi,
    hourly_aqi,
    iaqi,
    is_good_day,
)
from .limits import (
    LIMIT_SETS,
    SITE_THRESHOLDS,
    Limit,
    LimitSet,
    SiteThreshold,
    custom_threshold,
    exceeds,
    get_limit_set,
    get_site_threshold,
    limit_set_for,
    limit_value,
    ppb_to_ug_m3,
)
from .plan import (
    DEFAULT_PLAN,
    DISTRICT_PLAN_2018_2020,
    NoTargetError,
    Plan,
    PlanProgress,
    PlanTarget,
    progress,
)
from .rulesets import (
    DEFAULT_RULESET,
    RULESETS,
    RuleSet,
    Verdict,
    day_valid,
    eight_hour_valid,
    get_ruleset,
    hour_valid,
    month_valid,
    o3_daily_max_8h_valid,
    year_valid,
)
from .stats import (
    AnnualStatistics,
    EmptyDataError,
    annual_statistics,
    mean,
    percentile,
    percentile_exact,
)
from .warnings import (
    NATIONAL,
    WarningLevel,
    WarningResult,
    WarningScheme,
    emission_cut_percent,
    warning_level,
)

__all__ = [
    "AQI_LEVELS",
    "DAILY_INDICATORS",
    "DEFAULT_PLAN",
    "DEFAULT_RULESET",
    "DISTRICT_PLAN_2018_2020",
    "GENERATIONS",
    "HJ633_2012",
    "HJ633_2026",
    "HOURLY_INDICATORS",
    "INDICATORS",
    "LIMIT_SETS",
    "NATIONAL",
    "RULESETS",
    "SITE_THRESHOLDS",
    "AnnualStatistics",
    "AqiLevel",
    "AqiResult",
    "BreakpointTable",
    "EmptyDataError",
    "FallbackRequiredError",
    "IaqiResult",
    "InvalidValueError",
    "Limit",
    "LimitSet",
    "NoTargetError",
    "Plan",
    "PlanProgress",
    "PlanTarget",
    "RuleSet",
    "SiteThreshold",
    "StandardsError",
    "UnknownNameError",
    "Verdict",
    "WarningLevel",
    "WarningResult",
    "WarningScheme",
    "annual_statistics",
    "aqi_level",
    "breakpoint_table",
    "count_good_days",
    "custom_threshold",
    "daily_aqi",
    "day_valid",
    "eight_hour_valid",
    "emission_cut_percent",
    "exceeds",
    "get_limit_set",
    "get_ruleset",
    "get_site_threshold",
    "hour_valid",
    "hourly_aqi",
    "iaqi",
    "is_good_day",
    "limit_set_for",
    "limit_value",
    "mean",
    "month_valid",
    "o3_daily_max_8h_valid",
    "percentile",
    "percentile_exact",
    "ppb_to_ug_m3",
    "progress",
    "round_half_even",
    "warning_level",
    "year_valid",
]
