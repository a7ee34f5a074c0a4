"""A customer's IANA time zone from their address: Shopify's country code and province code.

Multi-zone countries map each province (Shopify's own codes, with the alternates Shopify also
accepts) to the zone most of its people live in; a province split between zones (Texas's far
west, Florida's panhandle, Nunavut, Yakutia) gets its majority zone. Countries with one zone
(or one offset everywhere that matters) map as a whole. Anything else is unknown: the caller
falls back to the shop's zone.
"""

_US = {
    "AL": "America/Chicago",
    "AK": "America/Anchorage",
    "AS": "Pacific/Pago_Pago",
    "AZ": "America/Phoenix",
    "AR": "America/Chicago",
    "CA": "America/Los_Angeles",
    "CO": "America/Denver",
    "CT": "America/New_York",
    "DE": "America/New_York",
    "DC": "America/New_York",
    "FM": "Pacific/Pohnpei",
    "FL": "America/New_York",
    "GA": "America/New_York",
    "GU": "Pacific/Guam",
    "HI": "Pacific/Honolulu",
    "ID": "America/Boise",
    "IL": "America/Chicago",
    "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago",
    "KS": "America/Chicago",
    "KY": "America/New_York",
    "LA": "America/Chicago",
    "ME": "America/New_York",
    "MH": "Pacific/Majuro",
    "MD": "America/New_York",
    "MA": "America/New_York",
    "MI": "America/Detroit",
    "MN": "America/Chicago",
    "MS": "America/Chicago",
    "MO": "America/Chicago",
    "MT": "America/Denver",
    "NE": "America/Chicago",
    "NV": "America/Los_Angeles",
    "NH": "America/New_York",
    "NJ": "America/New_York",
    "NM": "America/Denver",
    "NY": "America/New_York",
    "NC": "America/New_York",
    "ND": "America/Chicago",
    "MP": "Pacific/Saipan",
    "OH": "America/New_York",
    "OK": "America/Chicago",
    "OR": "America/Los_Angeles",
    "PW": "Pacific/Palau",
    "PA": "America/New_York",
    "PR": "America/Puerto_Rico",
    "RI": "America/New_York",
    "SC": "America/New_York",
    "SD": "America/Chicago",
    "TN": "America/Chicago",
    "TX": "America/Chicago",
    "UT": "America/Denver",
    "VT": "America/New_York",
    "VI": "America/St_Thomas",
    "VA": "America/New_York",
    "WA": "America/Los_Angeles",
    "WV": "America/New_York",
    "WI": "America/Chicago",
    "WY": "America/Denver",
    # AA, AE, AP (armed forces mail) say nothing about where the customer is.
}

_CA = {
    "AB": "America/Edmonton",
    "BC": "America/Vancouver",
    "MB": "America/Winnipeg",
    "NB": "America/Moncton",
    "NL": "America/St_Johns",
    "NS": "America/Halifax",
    "NT": "America/Edmonton",
    "NU": "America/Iqaluit",
    "ON": "America/Toronto",
    "PE": "America/Halifax",
    "QC": "America/Toronto",
    "SK": "America/Regina",
    "YT": "America/Whitehorse",
}

_AU = {
    "ACT": "Australia/Sydney",
    "NSW": "Australia/Sydney",
    "NT": "Australia/Darwin",
    "QLD": "Australia/Brisbane",
    "SA": "Australia/Adelaide",
    "TAS": "Australia/Hobart",
    "VIC": "Australia/Melbourne",
    "WA": "Australia/Perth",
}

_BR = {
    "AC": "America/Rio_Branco",
    "AL": "America/Maceio",
    "AP": "America/Belem",
    "AM": "America/Manaus",
    "BA": "America/Bahia",
    "CE": "America/Fortaleza",
    "DF": "America/Sao_Paulo",
    "ES": "America/Sao_Paulo",
    "GO": "America/Sao_Paulo",
    "MA": "America/Fortaleza",
    "MT": "America/Cuiaba",
    "MS": "America/Campo_Grande",
    "MG": "America/Sao_Paulo",
    "PA": "America/Belem",
    "PB": "America/Fortaleza",
    "PR": "America/Sao_Paulo",
    "PE": "America/Recife",
    "PI": "America/Fortaleza",
    "RJ": "America/Sao_Paulo",
    "RN": "America/Fortaleza",
    "RS": "America/Sao_Paulo",
    "RO": "America/Porto_Velho",
    "RR": "America/Boa_Vista",
    "SC": "America/Sao_Paulo",
    "SP": "America/Sao_Paulo",
    "SE": "America/Maceio",
    "TO": "America/Araguaina",
}

_MX_CITY = "America/Mexico_City"
_MX = {
    "AGS": _MX_CITY,
    "AGU": _MX_CITY,
    "BC": "America/Tijuana",
    "BCN": "America/Tijuana",
    "BCS": "America/Mazatlan",
    "CAMP": "America/Merida",
    "CAM": "America/Merida",
    "CHIS": _MX_CITY,
    "CHP": _MX_CITY,
    "CHIH": "America/Chihuahua",
    "CHH": "America/Chihuahua",
    "DF": _MX_CITY,
    "CMX": _MX_CITY,
    "CDMX": _MX_CITY,
    "COAH": "America/Monterrey",
    "COA": "America/Monterrey",
    "COL": _MX_CITY,
    "DGO": "America/Monterrey",
    "DUR": "America/Monterrey",
    "GTO": _MX_CITY,
    "GUA": _MX_CITY,
    "GRO": _MX_CITY,
    "HGO": _MX_CITY,
    "HID": _MX_CITY,
    "JAL": _MX_CITY,
    "MEX": _MX_CITY,
    "MICH": _MX_CITY,
    "MIC": _MX_CITY,
    "MOR": _MX_CITY,
    "NAY": "America/Mazatlan",
    "NL": "America/Monterrey",
    "NLE": "America/Monterrey",
    "OAX": _MX_CITY,
    "PUE": _MX_CITY,
    "QRO": _MX_CITY,
    "QUE": _MX_CITY,
    "Q ROO": "America/Cancun",
    "ROO": "America/Cancun",
    "SLP": _MX_CITY,
    "SIN": "America/Mazatlan",
    "SON": "America/Hermosillo",
    "TAB": _MX_CITY,
    "TAMPS": "America/Monterrey",
    "TAM": "America/Monterrey",
    "TLAX": _MX_CITY,
    "TLA": _MX_CITY,
    "VER": _MX_CITY,
    "YUC": "America/Merida",
    "ZAC": _MX_CITY,
}

_MOSCOW = "Europe/Moscow"
_YEKATERINBURG = "Asia/Yekaterinburg"
_RU = {
    "KGD": "Europe/Kaliningrad",
    **dict.fromkeys(
        (
            "AD ARK BEL BRY CE CU DA IN IVA KB KL KLU KC KR KO KOS KDA KRS LEN LIP ME MO MOW "
            "MOS MUR NEN NIZ NGR ORL PNZ PSK ROS RYA SPE SE SMO STA TAM TA TUL TVE VLA VLG "
            "VOR YAR"
        ).split(),
        _MOSCOW,
    ),
    "KIR": "Europe/Kirov",
    "VGG": "Europe/Volgograd",
    "AST": "Europe/Astrakhan",
    "SAM": "Europe/Samara",
    "SAR": "Europe/Saratov",
    "UD": "Europe/Samara",
    "ULY": "Europe/Ulyanovsk",
    **dict.fromkeys("BA CHE KGN ORE PER SVE TYU KHM YAN".split(), _YEKATERINBURG),
    "OMS": "Asia/Omsk",
    "AL": "Asia/Barnaul",
    "ALT": "Asia/Barnaul",
    "KEM": "Asia/Novokuznetsk",
    "KK": "Asia/Krasnoyarsk",
    "KYA": "Asia/Krasnoyarsk",
    "NVS": "Asia/Novosibirsk",
    "TOM": "Asia/Tomsk",
    "TY": "Asia/Krasnoyarsk",
    "IRK": "Asia/Irkutsk",
    "BU": "Asia/Irkutsk",
    "ZAB": "Asia/Chita",
    "AMU": "Asia/Yakutsk",
    "SA": "Asia/Yakutsk",
    "PRI": "Asia/Vladivostok",
    "KHA": "Asia/Vladivostok",
    "YEV": "Asia/Vladivostok",
    "MAG": "Asia/Magadan",
    "SAK": "Asia/Sakhalin",
    "KAM": "Asia/Kamchatka",
    "CHU": "Asia/Anadyr",
}

# Spain is one zone but for the Canary Islands (Las Palmas, Santa Cruz de Tenerife).
_ES = {"GC": "Atlantic/Canary", "TF": "Atlantic/Canary"}

BY_PROVINCE: dict[str, dict[str, str]] = {
    "US": _US,
    "CA": _CA,
    "AU": _AU,
    "BR": _BR,
    "MX": _MX,
    "RU": _RU,
    "ES": _ES,
}

# A multi-zone country's customer with no known province: the zone most of its people use.
COUNTRY_MAJORITY = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "MX": _MX_CITY,
    "RU": _MOSCOW,
}

SINGLE_ZONE = {
    "AD": "Europe/Andorra",
    "AE": "Asia/Dubai",
    "AL": "Europe/Tirane",
    "AM": "Asia/Yerevan",
    "AR": "America/Argentina/Buenos_Aires",
    "AT": "Europe/Vienna",
    "AZ": "Asia/Baku",
    "BA": "Europe/Sarajevo",
    "BD": "Asia/Dhaka",
    "BE": "Europe/Brussels",
    "BG": "Europe/Sofia",
    "BH": "Asia/Bahrain",
    "BO": "America/La_Paz",
    "BY": "Europe/Minsk",
    "CH": "Europe/Zurich",
    "CN": "Asia/Shanghai",
    "CO": "America/Bogota",
    "CR": "America/Costa_Rica",
    "CY": "Asia/Nicosia",
    "CZ": "Europe/Prague",
    "DE": "Europe/Berlin",
    "DK": "Europe/Copenhagen",
    "DO": "America/Santo_Domingo",
    "DZ": "Africa/Algiers",
    "EE": "Europe/Tallinn",
    "EG": "Africa/Cairo",
    "ES": "Europe/Madrid",
    "FI": "Europe/Helsinki",
    "FR": "Europe/Paris",
    "GB": "Europe/London",
    "GE": "Asia/Tbilisi",
    "GH": "Africa/Accra",
    "GR": "Europe/Athens",
    "GT": "America/Guatemala",
    "HK": "Asia/Hong_Kong",
    "HN": "America/Tegucigalpa",
    "HR": "Europe/Zagreb",
    "HU": "Europe/Budapest",
    "IE": "Europe/Dublin",
    "IL": "Asia/Jerusalem",
    "IN": "Asia/Kolkata",
    "IQ": "Asia/Baghdad",
    "IS": "Atlantic/Reykjavik",
    "IT": "Europe/Rome",
    "JM": "America/Jamaica",
    "JO": "Asia/Amman",
    "JP": "Asia/Tokyo",
    "KE": "Africa/Nairobi",
    "KR": "Asia/Seoul",
    "KW": "Asia/Kuwait",
    "LB": "Asia/Beirut",
    "LK": "Asia/Colombo",
    "LT": "Europe/Vilnius",
    "LU": "Europe/Luxembourg",
    "LV": "Europe/Riga",
    "MA": "Africa/Casablanca",
    "MD": "Europe/Chisinau",
    "ME": "Europe/Podgorica",
    "MK": "Europe/Skopje",
    "MT": "Europe/Malta",
    "MY": "Asia/Kuala_Lumpur",
    "NG": "Africa/Lagos",
    "NI": "America/Managua",
    "NL": "Europe/Amsterdam",
    "NO": "Europe/Oslo",
    "NP": "Asia/Kathmandu",
    "NZ": "Pacific/Auckland",
    "OM": "Asia/Muscat",
    "PA": "America/Panama",
    "PE": "America/Lima",
    "PH": "Asia/Manila",
    "PK": "Asia/Karachi",
    "PL": "Europe/Warsaw",
    "PR": "America/Puerto_Rico",
    "PT": "Europe/Lisbon",
    "PY": "America/Asuncion",
    "QA": "Asia/Qatar",
    "RO": "Europe/Bucharest",
    "RS": "Europe/Belgrade",
    "SA": "Asia/Riyadh",
    "SE": "Europe/Stockholm",
    "SG": "Asia/Singapore",
    "SI": "Europe/Ljubljana",
    "SK": "Europe/Bratislava",
    "SV": "America/El_Salvador",
    "TH": "Asia/Bangkok",
    "TN": "Africa/Tunis",
    "TR": "Europe/Istanbul",
    "TT": "America/Port_of_Spain",
    "TW": "Asia/Taipei",
    "UA": "Europe/Kyiv",
    "UY": "America/Montevideo",
    "VE": "America/Caracas",
    "VN": "Asia/Ho_Chi_Minh",
    "ZA": "Africa/Johannesburg",
    "ZW": "Africa/Harare",
}


def zone_name(country_code: str | None, province_code: str | None) -> str | None:
    """The IANA zone an address alone gives, or None when it does not tell. Codes compare
    case-insensitively, surrounding spaces ignored."""
    country = _code(country_code)
    by_province = BY_PROVINCE.get(country, {})
    province = _code(province_code)
    if province in by_province:
        return by_province[province]
    if country in COUNTRY_MAJORITY:
        return None  # several zones and no usable province
    return SINGLE_ZONE.get(country)


def customer_zone_name(country_code: str | None, province_code: str | None, shop_zone: str) -> str:
    """The zone to use for a customer: their address's, else the shop's. A multi-zone country
    without a usable province takes the shop's zone when the shop is in that country, else the
    country's majority zone (a European shop's US customer is not on Paris time)."""
    name = zone_name(country_code, province_code)
    if name is not None:
        return name
    country = _code(country_code)
    if country in COUNTRY_MAJORITY and shop_zone not in zones_of(country):
        return COUNTRY_MAJORITY[country]
    return shop_zone


def zones_of(country_code: str) -> frozenset[str]:
    """Every zone the table gives to addresses in this country by province."""
    return frozenset(BY_PROVINCE.get(_code(country_code), {}).values())


def _code(code: str | None) -> str:
    return (code or "").strip().upper()
