"""The tool catalogue: every tool, its domain, and which tools are held out of the training split."""

from __future__ import annotations

from nesso.agentic_data import tools_money, tools_ops, tools_places, tools_shipped
from nesso.agentic_data.render import L
from nesso.agentic_data.spec import ToolSpec

TOOLS: list[ToolSpec] = [*tools_money.TOOLS, *tools_places.TOOLS, *tools_ops.TOOLS, *tools_shipped.TOOLS]
TOOL_BY_NAME: dict[str, ToolSpec] = {t.name: t for t in TOOLS}
DOMAINS: list[str] = sorted({t.domain for t in TOOLS})

# One tool per domain never appears in a train row (neither offered nor called), nor do its phrasing templates:
# the held-out split measures generalisation to unseen tools. Fixed by name, independent of the seed.
HELDOUT_TOOLS: frozenset[str] = frozenset({
    "get_portfolio_performance", "analyze_file_hash", "get_weather_alerts", "find_free_slot", "rent_car",
    "request_refund", "calculate_tip", "search_documents", "post_slack_message", "log_work_hours",
})
TRAIN_TOOLS: list[ToolSpec] = [t for t in TOOLS if t.name not in HELDOUT_TOOLS]
HELD_TOOLS: list[ToolSpec] = [t for t in TOOLS if t.name in HELDOUT_TOOLS]

# How a request of each domain is named, for "I can't do that here" answers.
DOMAIN_NOUNS: dict[str, L] = {
    "finance": L("finance", "finanza"), "cybersecurity": L("security", "sicurezza informatica"),
    "weather": L("weather", "meteo"), "calendar": L("calendar", "calendario"), "travel": L("travel", "viaggi"),
    "ecommerce": L("shopping", "acquisti online"), "math_units": L("calculation", "calcolo"),
    "files_databases": L("file and database", "file e database"), "communication": L("messaging", "messaggistica"),
    "productivity": L("task-tracking", "gestione delle attività"),
}
