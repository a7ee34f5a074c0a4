"""A customer's zone from Shopify's country and province codes, else the shop's."""

import os
import subprocess
import sys
import zoneinfo

import pytest

from services.tagger.journeys import zones
from services.tagger.journeys.timing import customer_zone, load_zone
from services.tagger.journeys.zones import customer_zone_name, zone_name


def every_zone_in_the_tables() -> set[str]:
    names = set(zones.SINGLE_ZONE.values()) | set(zones.COUNTRY_MAJORITY.values())
    for provinces in zones.BY_PROVINCE.values():
        names |= set(provinces.values())
    return names


def test_every_zone_in_the_tables_is_a_real_iana_zone() -> None:
    available = zoneinfo.available_timezones()
    missing = sorted(name for name in every_zone_in_the_tables() if name not in available)
    assert missing == []


def test_the_multi_zone_countries_cover_their_provinces() -> None:
    assert len(zones.BY_PROVINCE["US"]) >= 51  # 50 states and DC, territories besides
    assert set(zones.BY_PROVINCE["CA"]) == set("AB BC MB NB NL NS NT NU ON PE QC SK YT".split())
    assert set(zones.BY_PROVINCE["AU"]) == set("ACT NSW NT QLD SA TAS VIC WA".split())
    assert len(zones.BY_PROVINCE["BR"]) == 27  # 26 states and the federal district
    assert len({code for code, zone in zones.BY_PROVINCE["MX"].items()}) >= 32
    assert len(zones.BY_PROVINCE["RU"]) >= 83
    # Each multi-zone country really spreads over several zones.
    for country in ("US", "CA", "AU", "BR", "MX", "RU"):
        assert len(zones.zones_of(country)) >= 4, country


@pytest.mark.parametrize(
    ("country", "province", "expected"),
    [
        ("US", "CA", "America/Los_Angeles"),
        ("US", "NY", "America/New_York"),
        ("US", "AZ", "America/Phoenix"),  # no DST
        ("us", " hi ", "Pacific/Honolulu"),  # case and spaces do not matter
        ("CA", "NL", "America/St_Johns"),  # half-hour offset
        ("CA", "SK", "America/Regina"),
        ("AU", "WA", "Australia/Perth"),
        ("AU", "QLD", "Australia/Brisbane"),
        ("BR", "AM", "America/Manaus"),
        ("MX", "Q ROO", "America/Cancun"),  # Shopify's code has a space
        ("MX", "CDMX", "America/Mexico_City"),  # an alternate code
        ("RU", "KGD", "Europe/Kaliningrad"),
        ("RU", "KAM", "Asia/Kamchatka"),
        ("ES", "TF", "Atlantic/Canary"),
        ("ES", "M", "Europe/Madrid"),
        ("DE", None, "Europe/Berlin"),
        ("JP", "", "Asia/Tokyo"),
    ],
)
def test_the_address_gives_the_zone(country: str, province: str | None, expected: str) -> None:
    assert zone_name(country, province) == expected
    assert customer_zone_name(country, province, "Europe/London") == expected


def test_an_unknown_country_or_no_address_takes_the_shops_zone() -> None:
    assert zone_name("XX", None) is None
    assert customer_zone_name("XX", "YY", "Asia/Singapore") == "Asia/Singapore"
    assert customer_zone_name(None, None, "America/Denver") == "America/Denver"


def test_a_multi_zone_country_without_a_province_prefers_a_shop_there() -> None:
    # A US shop's customer with no state: the shop's US zone is the better guess...
    assert customer_zone_name("US", None, "America/Denver") == "America/Denver"
    assert customer_zone_name("US", "AE", "America/Chicago") == "America/Chicago"
    # ...but a Paris shop's US customer is not on Paris time.
    assert customer_zone_name("US", None, "Europe/Paris") == "America/New_York"
    assert customer_zone_name("AU", "??", "Europe/Paris") == "Australia/Sydney"


def test_customer_zone_loads_the_zone_and_names_an_unknown_shop_zone() -> None:
    assert customer_zone("CA", "BC", "UTC") == zoneinfo.ZoneInfo("America/Vancouver")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        customer_zone(None, None, "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        load_zone("../../etc/passwd")


def test_zones_load_without_system_zone_files() -> None:
    # PYTHONTZPATH empty: zoneinfo finds no system files and must use the pinned tzdata package.
    script = (
        "import zoneinfo, datetime\n"
        "assert zoneinfo.TZPATH == (), zoneinfo.TZPATH\n"
        "zone = zoneinfo.ZoneInfo('America/Sao_Paulo')\n"
        "at = datetime.datetime(2025, 1, 1, 12, tzinfo=zone)\n"
        "print(at.utcoffset())\n"
    )
    env = {**os.environ, "PYTHONTZPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "-1 day, 21:00:00"
