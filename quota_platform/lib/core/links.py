"""Where each entity's dashboard page lives, relative to the dashboard base URL: the one URL scheme
the static site writes and Slack messages link to.

- the company: ``{base}/index.html``
- a manager: ``{base}/manager/{user_id}.html``
- a rep: ``{base}/rep/{user_id}.html``

User Ids are Salesforce record Ids (letters and digits), so they are safe in a path as they are;
anything else is percent-encoded."""

from __future__ import annotations

from urllib.parse import quote

COMPANY_PAGE = "index.html"


def dashboard_path(level: str, entity_id: str) -> str:
    """The page of an entity, relative to the site's root."""
    if level == "company":
        return COMPANY_PAGE
    if level not in ("manager", "rep"):
        raise ValueError(f"no dashboard page for level {level!r} (company, manager or rep)")
    return f"{level}/{quote(str(entity_id), safe='')}.html"


def dashboard_url(base_url: str, level: str, entity_id: str) -> str:
    """The absolute link to an entity's page under ``base_url`` (no trailing slash needed)."""
    return f"{base_url.rstrip('/')}/{dashboard_path(level, entity_id)}"
