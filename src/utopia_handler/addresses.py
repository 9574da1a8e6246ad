"""US state codes and the normalising used to compare names and street lines."""

from __future__ import annotations

import re
import unicodedata

STATE_CODES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI", "minnesota": "MN",
    "mississippi": "MS", "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY",
    "north carolina": "NC", "north dakota": "ND", "ohio": "OH", "oklahoma": "OK", "oregon": "OR",
    "pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC", "south dakota": "SD",
    "tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA",
    "washington": "WA", "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY",
    "american samoa": "AS", "guam": "GU", "northern mariana islands": "MP", "puerto rico": "PR",
    "us virgin islands": "VI", "virgin islands": "VI",
}  # fmt: skip
_VALID_CODES = frozenset(STATE_CODES.values())

# Long forms on the left become the USPS abbreviation, so either spelling compares equal.
_STREET_WORDS = {
    "north": "n", "south": "s", "east": "e", "west": "w",
    "northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw",
    "street": "st", "avenue": "ave", "av": "ave", "drive": "dr", "lane": "ln", "road": "rd",
    "boulevard": "blvd", "court": "ct", "circle": "cir", "place": "pl", "parkway": "pkwy",
    "highway": "hwy", "terrace": "ter", "trail": "trl", "square": "sq", "canyon": "cyn",
    "hollow": "holw", "heights": "hts", "point": "pt", "ridge": "rdg", "crossing": "xing",
    "mountain": "mtn", "center": "ctr", "cove": "cv", "creek": "crk", "estates": "ests",
    "expressway": "expy", "freeway": "fwy", "junction": "jct", "meadows": "mdws",
    "valley": "vly", "view": "vw", "village": "vlg", "loop": "loop", "way": "way",
}  # fmt: skip
_UNIT_START = re.compile(
    r"\s(?:#|(?:apt|apartment|unit|ste|suite|lot|spc|space|bldg|building|trlr)\b).*$"
)


def state_code(state: str) -> str | None:
    """The two-letter USPS code for a state name or code, or None when it is not a US state."""
    cleaned = " ".join(state.replace(".", " ").split()).casefold()
    if cleaned.upper() in _VALID_CODES:
        return cleaned.upper()
    return STATE_CODES.get(cleaned)


def street_with_unit(street: str, unit: str) -> str:
    """One street line that keeps the unit: "220 W MAIN ST" + "4B" -> "220 W MAIN ST # 4B"."""
    street, unit = " ".join(street.split()), " ".join(unit.split())
    if not unit:
        return street
    # A bare unit number gets the USPS "#" designator; one that names itself ("UNIT 4B") is kept.
    if re.match(r"^[#A-Za-z]{2,}", unit) and not re.match(r"^[A-Za-z]?\d", unit):
        return f"{street} {unit}"
    return f"{street} # {unit.lstrip('#').strip()}"


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    without_accents = "".join(c for c in decomposed if not unicodedata.combining(c))
    return without_accents.casefold()


def normalise_name(name: str) -> str:
    """Case, accents, apostrophes, hyphens and spacing removed: "O'Neill-Ramírez" -> "oneill ramirez"."""
    folded = _fold(name).replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^\w]+", " ", folded).split())


def normalise_street(street: str) -> str:
    """A street line without its unit, with punctuation dropped and common words abbreviated."""
    folded = " " + " ".join(re.sub(r"[^\w#]+", " ", _fold(street)).split())
    folded = _UNIT_START.sub("", folded)
    words = [_STREET_WORDS.get(word, word) for word in folded.split()]
    return " ".join(words)
