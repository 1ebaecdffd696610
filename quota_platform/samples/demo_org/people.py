"""People and hierarchy: the VP, directors, managers, account executives in eight teams, the rep who
left, sales engineers and the overlay specialist (User rows), and each rep's generating parameters
(:class:`~quota_platform.samples.demo_org.model.Rep`)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np

from quota_platform.samples.demo_org.model import Org, Rep, Team

TEAMS = (
    Team("Enterprise East", 0, 8, 5.5, 2.0, 1.4, "Enterprise Account Executive"),
    Team("Enterprise West", 0, 8, 5.5, 2.0, 1.4, "Enterprise Account Executive"),
    Team("Mid-Market East", 0, 8, 6.5, 1.0, 1.0, "Account Executive"),
    Team("Mid-Market West", 0, 8, 6.5, 1.0, 1.0, "Account Executive"),
    Team("Strategic Accounts", 1, 6, 4.5, 3.5, 1.7, "Strategic Account Director"),
    Team("Commercial", 1, 10, 20.0, 0.25, 0.5, "Commercial Account Executive"),
    Team("Growth", 1, 5, 8.0, 0.8, 0.9, "Growth Account Executive"),
    Team("EMEA", 1, 7, 6.0, 1.3, 1.1, "Account Executive, EMEA"),
)
DIRECTORS = ("Americas", "Strategic & International")

# Reps hired recently: (team, slot) -> days before the as-of date.
NEW_HIRES = {
    ("Enterprise West", 7): 170,
    ("Mid-Market East", 7): 140,
    ("Commercial", 7): 110,
    ("Mid-Market West", 7): 80,
    ("EMEA", 6): 50,
    ("Growth", 4): 25,
}
RAMP_ADJUSTED = (("Commercial", 7), ("Mid-Market West", 7))
MID_HISTORY_HIRES = {("Enterprise East", 7): 540, ("Mid-Market West", 6): 420, ("Growth", 3): 330}
MONTHLY_CADENCE_TEAMS = ("Commercial",)  # high-velocity reps on monthly quotas
FAMILY_QUOTAS = {
    ("Enterprise East", 0): ("NewBusiness", "Platform"),
    ("Enterprise East", 1): ("NewBusiness", "Platform"),
    ("Mid-Market West", 0): ("NewBusiness", "Platform"),
    ("Strategic Accounts", 0): ("Expansion", "Analytics"),
}
EMEA_CURRENCY = ("EUR", "EUR", "EUR", "GBP", "GBP", "GBP", "EUR")
LEAVER_TEAM = "Mid-Market East"
LEAVER_DAYS_BEFORE_AS_OF = 215

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Oliver", "Sophia", "Elijah", "Isabella", "James",
    "Mia", "William", "Amelia", "Benjamin", "Harper", "Lucas", "Evelyn", "Henry", "Abigail",
    "Theodore", "Priya", "Mateo", "Chloe", "Daniel", "Grace", "Samuel", "Aisha", "David", "Nora",
    "Joseph", "Hannah", "Carlos", "Leah", "Kenji", "Zoe", "Gabriel", "Fatima", "Julian", "Ingrid",
    "Marco",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson",
    "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Nguyen", "Hill", "Patel", "Schmidt", "Dubois", "Rossi",
    "O'Brien", "Kowalski",
)


def build_people(org: Org) -> None:
    """Every User of the org, in Id order: the VP, directors, managers and their reps (recent and
    mid-history hires at fixed slots), the leaver, sales engineers, the analytics overlay
    specialist and sales ops; the reps and the overlay users go to ``org``."""
    rng = org.rng_people
    n_users = 1 + len(DIRECTORS) + len(TEAMS) + sum(t.size for t in TEAMS) + 1 + 4 + 1
    combos = rng.permutation(len(FIRST_NAMES) * len(LAST_NAMES))[:n_users]
    names = [
        (FIRST_NAMES[c // len(LAST_NAMES)], LAST_NAMES[c % len(LAST_NAMES)]) for c in combos.tolist()
    ]
    name_iter = iter(names)

    def old_hire() -> date:
        return org.opp_start - timedelta(days=int(rng.integers(200, 2500)))

    def add_user(title: str, manager: str | None, hire: date, active: bool = True) -> dict:
        first, last = next(name_iter)
        user = {
            "Id": org.ids("005"),
            "Name": f"{first} {last}",
            "Email": f"{first}.{last}@example.com".lower().replace("'", ""),
            "ManagerId": manager,
            "IsActive": active,
            "Hire_Date__c": hire,
            "Title": title,
        }
        org.users.append(user)
        return user

    vp = add_user("VP of Sales", None, old_hire())
    directors = [add_user(f"Director of Sales, {d}", vp["Id"], old_hire()) for d in DIRECTORS]
    managers = [
        add_user(f"Sales Manager, {t.name}", directors[t.director]["Id"], old_hire()) for t in TEAMS
    ]
    for team, manager in zip(TEAMS, managers):
        for slot in range(team.size):
            key = (team.name, slot)
            if key in NEW_HIRES:
                hire = org.as_of - timedelta(days=NEW_HIRES[key])
            elif key in MID_HISTORY_HIRES:
                hire = org.as_of - timedelta(days=MID_HISTORY_HIRES[key])
            else:
                hire = old_hire()
            user = add_user(team.title, manager["Id"], hire)
            org.reps.append(_rep(org, user, team, slot, hire, None))
    team = next(t for t in TEAMS if t.name == LEAVER_TEAM)
    manager = managers[TEAMS.index(team)]
    left = org.as_of - timedelta(days=LEAVER_DAYS_BEFORE_AS_OF)
    user = add_user(team.title, manager["Id"], old_hire(), active=False)
    org.leaver = _rep(org, user, team, team.size, user["Hire_Date__c"], left)
    org.reps.append(org.leaver)
    org.replacement = next(r for r in org.reps if r.team is team and r.slot == 0)
    for director_ix, count in ((0, 2), (1, 1)):
        director = directors[director_ix]["Id"]
        org.overlay_by_director[director_ix] = [
            add_user("Sales Engineer", director, old_hire())["Id"] for _ in range(count)
        ]
    org.analytics_specialist = add_user("Analytics Overlay Specialist", vp["Id"], old_hire())["Id"]
    add_user("Sales Operations Manager", vp["Id"], old_hire())


def _rep(org: Org, user: dict, team: Team, slot: int, hire: date, left: date | None) -> Rep:
    """A rep's generating parameters: its skill, deal size, opportunity rate, slip and bunching
    drawn around its team's values."""
    rng = org.rng_people
    key = (team.name, slot)
    monthly = team.name in MONTHLY_CADENCE_TEAMS
    return Rep(
        user_id=user["Id"],
        name=user["Name"],
        manager_id=user["ManagerId"],
        team=team,
        slot=slot,
        currency=EMEA_CURRENCY[slot % len(EMEA_CURRENCY)] if team.name == "EMEA" else "USD",
        cadence="month" if monthly else "quarter",
        family_quota=FAMILY_QUOTAS.get(key),
        ramp_adjusted=key in RAMP_ADJUSTED,
        hire_date=hire,
        left_date=left,
        skill=float(np.clip(math.exp(rng.normal(0.0, 0.3)), 0.5, 2.0)),
        size_scale=team.scale * math.exp(rng.normal(0.0, 0.2)),
        rate=team.rate * math.exp(rng.normal(0.0, 0.15)),
        slip=float(rng.uniform(0.15, 0.35)),
        bunch=float(rng.uniform(0.2, 0.45)),
    )
