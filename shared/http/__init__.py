"""HTTP, pure: RFC 9110/9111 dates, fields, cache policy, conditionals and Range.

Modules, each importing only those before it: ``dates`` (HTTP-date), ``fields``
(lists, Cache-Control, hop-by-hop, Vary), ``targeted`` (CDN-Cache-Control, RFC
9213), ``freshness`` (lifetime and age), ``cachepolicy`` (RFC 9111 decisions),
``conditionals`` (304, If-Range, Range).
"""

from shared.http.cachepolicy import (
    Lookup,
    StaleRules,
    Storable,
    classify,
    freshen,
    invalidates,
    serve_to_authorized,
    stale_rules,
    storable,
    stored_lifetime,
)
from shared.http.conditionals import (
    RangeKind,
    RangeResult,
    evaluate_conditionals,
    if_range_matches,
    if_range_validator,
    parse_range,
    resume_offset,
)
from shared.http.dates import field_date, format_http_date, parse_http_date
from shared.http.fields import (
    HOP_BY_HOP,
    Directives,
    Headers,
    delta_seconds,
    end_to_end,
    parse_cache_control,
    vary_key,
    vary_names,
)
from shared.http.freshness import HEURISTIC_STATUSES, current_age, freshness_lifetime
from shared.http.targeted import CDN_CACHE_CONTROL, cache_headers, target_list

__all__ = [
    "CDN_CACHE_CONTROL",
    "HEURISTIC_STATUSES",
    "HOP_BY_HOP",
    "Directives",
    "Headers",
    "Lookup",
    "RangeKind",
    "RangeResult",
    "StaleRules",
    "Storable",
    "cache_headers",
    "classify",
    "current_age",
    "delta_seconds",
    "end_to_end",
    "evaluate_conditionals",
    "field_date",
    "format_http_date",
    "freshen",
    "freshness_lifetime",
    "if_range_matches",
    "if_range_validator",
    "invalidates",
    "parse_cache_control",
    "parse_http_date",
    "parse_range",
    "resume_offset",
    "serve_to_authorized",
    "stale_rules",
    "storable",
    "stored_lifetime",
    "target_list",
    "vary_key",
    "vary_names",
]
