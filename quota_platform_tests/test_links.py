"""The dashboard URL scheme shared by the static site and Slack messages."""

import pytest

from quota_platform.lib.core.links import dashboard_path, dashboard_url


def test_pages_of_each_level():
    assert dashboard_path("company", "company") == "index.html"
    assert dashboard_path("manager", "005M1") == "manager/005M1.html"
    assert dashboard_url("https://dash.example.com/q/", "rep", "005R1") == "https://dash.example.com/q/rep/005R1.html"
    assert dashboard_url("file:///tmp/site", "company", "company") == "file:///tmp/site/index.html"


def test_an_id_cannot_climb_out_of_its_folder():
    assert dashboard_path("rep", "../../etc/x") == "rep/..%2F..%2Fetc%2Fx.html"


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="'team'"):
        dashboard_path("team", "x")
