"""Joda-Time ``DateTimeFormat`` patterns, as Confluent's ``path.format`` uses them.

``'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH``: letters are fields, text in single quotes is
literal (``''`` is one quote), anything else is copied. Supported letters: ``G`` era, ``C``
century, ``Y``/``y``/``u`` year (``yy``: two digits), ``x`` week-year, ``w`` week of week-year,
``e`` day of week (1 = Monday), ``E`` day-of-week name, ``D`` day of year, ``M`` month
(``MMM``/``MMMM``: name), ``d`` day, ``a`` AM/PM, ``K``/``h``/``H``/``k`` hours, ``m`` minute,
``s`` second, ``S`` fraction of second, ``Z`` offset (``Z`` +0100, ``ZZ`` +01:00, ``ZZZ`` zone
id), ``z`` zone abbreviation. Names come from the ``locale`` table below.

A :class:`JodaPattern` is compiled once; :meth:`JodaPattern.format` formats one local
date-time and is called once per distinct time bucket, not per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from s3sink.errors import ConfigError

#: language -> (short months, full months, short days Mon.., full days Mon.., AM, PM)
LOCALES: dict[
    str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...], str, str]
] = {
    "en": (
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        "AM",
        "PM",
    ),
    "fr": (
        (
            "janv.",
            "févr.",
            "mars",
            "avr.",
            "mai",
            "juin",
            "juil.",
            "août",
            "sept.",
            "oct.",
            "nov.",
            "déc.",
        ),
        (
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ),
        ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."),
        ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
        "AM",
        "PM",
    ),
    "de": (
        (
            "Jan.",
            "Feb.",
            "März",
            "Apr.",
            "Mai",
            "Juni",
            "Juli",
            "Aug.",
            "Sept.",
            "Okt.",
            "Nov.",
            "Dez.",
        ),
        (
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ),
        ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
        ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
        "AM",
        "PM",
    ),
    "es": (
        ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
        (
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ),
        ("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
        ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
        "a. m.",
        "p. m.",
    ),
    "it": (
        ("gen", "feb", "mar", "apr", "mag", "giu", "lug", "ago", "set", "ott", "nov", "dic"),
        (
            "gennaio",
            "febbraio",
            "marzo",
            "aprile",
            "maggio",
            "giugno",
            "luglio",
            "agosto",
            "settembre",
            "ottobre",
            "novembre",
            "dicembre",
        ),
        ("lun", "mar", "mer", "gio", "ven", "sab", "dom"),
        ("lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"),
        "AM",
        "PM",
    ),
    "pt": (
        (
            "jan.",
            "fev.",
            "mar.",
            "abr.",
            "mai.",
            "jun.",
            "jul.",
            "ago.",
            "set.",
            "out.",
            "nov.",
            "dez.",
        ),
        (
            "janeiro",
            "fevereiro",
            "março",
            "abril",
            "maio",
            "junho",
            "julho",
            "agosto",
            "setembro",
            "outubro",
            "novembro",
            "dezembro",
        ),
        ("seg.", "ter.", "qua.", "qui.", "sex.", "sáb.", "dom."),
        (
            "segunda-feira",
            "terça-feira",
            "quarta-feira",
            "quinta-feira",
            "sexta-feira",
            "sábado",
            "domingo",
        ),
        "AM",
        "PM",
    ),
    "nl": (
        ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
        (
            "januari",
            "februari",
            "maart",
            "april",
            "mei",
            "juni",
            "juli",
            "augustus",
            "september",
            "oktober",
            "november",
            "december",
        ),
        ("ma", "di", "wo", "do", "vr", "za", "zo"),
        ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"),
        "a.m.",
        "p.m.",
    ),
}

_TEXT_LETTERS = frozenset("GEa")
_NUMERIC = frozenset("CYyuxwDdeKhHkmsS")
_KNOWN = _NUMERIC | _TEXT_LETTERS | frozenset("MZz")

#: Milliseconds of the finest unit a letter depends on (to group records before formatting).
_UNIT_MS = {
    "S": 1,
    "s": 1000,
    "m": 60_000,
    "H": 3_600_000,
    "k": 3_600_000,
    "K": 3_600_000,
    "h": 3_600_000,
    "a": 3_600_000,
    "Z": 3_600_000 // 4,  # offsets change on the quarter hour at most
    "z": 3_600_000 // 4,
}
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Token:
    #: A pattern letter, or "" for literal text in ``text``.
    letter: str
    count: int = 0
    text: str = ""


def locale_language(locale: str) -> str:
    return locale.replace("_", "-").split("-")[0].lower()


@dataclass(frozen=True)
class JodaPattern:
    pattern: str
    tokens: tuple[Token, ...]
    language: str

    @classmethod
    def compile(cls, pattern: str, locale: str = "en-US", key: str = "path.format") -> JodaPattern:
        tokens = tuple(_tokenize(pattern, key))
        lang = locale_language(locale)
        texts = any(t.letter in _TEXT_LETTERS or (t.letter == "M" and t.count >= 3) for t in tokens)
        if texts and lang not in LOCALES:
            raise ConfigError(
                f"locale: {locale!r} has no month/day names here; use one of "
                f"{', '.join(sorted(LOCALES))} or a numeric {key}",
                key="locale",
            )
        return cls(pattern, tokens, lang if lang in LOCALES else "en")

    def finest_unit_ms(self) -> int:
        """Records whose local times agree down to this many ms format identically."""
        units = [_UNIT_MS.get(t.letter, DAY_MS) for t in self.tokens if t.letter]
        return min(units, default=DAY_MS)

    def format(self, local: datetime, zone: ZoneInfo | timezone | None = None) -> str:
        """Format a naive local date-time (``zone`` only matters for ``Z`` and ``z``)."""
        names = LOCALES[self.language]
        return "".join(_field(t, local, names, zone) if t.letter else t.text for t in self.tokens)

    def segments(self) -> list[tuple[str | None, bool]]:
        """Per ``/``-separated segment: the Hive column name (``'year'=``, else ``None``) and
        whether its value is all digits."""
        segs: list[list[Token]] = [[]]
        for t in self.tokens:
            if t.letter:
                segs[-1].append(t)
                continue
            for i, part in enumerate(t.text.split("/")):
                if i:
                    segs.append([])
                if part:
                    segs[-1].append(Token("", text=part))
        return [_segment(s) for s in segs if s]


def _segment(tokens: Sequence[Token]) -> tuple[str | None, bool]:
    if tokens and not tokens[0].letter and "=" in tokens[0].text:
        name, _, value_text = tokens[0].text.partition("=")
        rest = tokens[1:]
        numeric = (
            not value_text
            and bool(rest)
            and all(t.letter in _NUMERIC or (t.letter == "M" and t.count < 3) for t in rest)
        )
        return name, numeric
    return None, False


def _tokenize(pattern: str, key: str) -> list[Token]:
    tokens: list[Token] = []
    lit: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                lit.append("'")
                i += 2
                continue
            j = i + 1
            while True:
                if j >= n:
                    raise ConfigError(f"{key}: unterminated quote in {pattern!r}", key=key)
                if pattern[j] == "'":
                    if j + 1 < n and pattern[j + 1] == "'":
                        lit.append("'")
                        j += 2
                        continue
                    break
                lit.append(pattern[j])
                j += 1
            i = j + 1
            continue
        if c.isascii() and c.isalpha():
            if c not in _KNOWN:
                raise ConfigError(
                    f"{key}: unknown pattern letter {c!r} in {pattern!r}; quote literal text "
                    "('year'=YYYY)",
                    key=key,
                )
            j = i
            while j < n and pattern[j] == c:
                j += 1
            if lit:
                tokens.append(Token("", text="".join(lit)))
                lit = []
            tokens.append(Token(c, j - i))
            i = j
            continue
        lit.append(c)
        i += 1
    if lit:
        tokens.append(Token("", text="".join(lit)))
    return tokens


def _num(v: int, count: int) -> str:
    s = str(abs(v)).zfill(count)
    return "-" + s if v < 0 else s


def _field(
    t: Token,
    d: datetime,
    names: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...], str, str],
    zone: ZoneInfo | timezone | None,
) -> str:
    c, k = t.letter, t.count
    if c in "Yyu":
        if k == 2:
            return _num(d.year % 100, 2)
        return _num(d.year, k)
    if c == "x":
        wy = d.isocalendar()[0]
        return _num(wy % 100, 2) if k == 2 else _num(wy, k)
    if c == "w":
        return _num(d.isocalendar()[1], k)
    if c == "e":
        return _num(d.isoweekday(), k)
    if c == "E":
        return names[3][d.weekday()] if k >= 4 else names[2][d.weekday()]
    if c == "D":
        return _num(d.timetuple().tm_yday, k)
    if c == "M":
        if k >= 4:
            return names[1][d.month - 1]
        if k == 3:
            return names[0][d.month - 1]
        return _num(d.month, k)
    if c == "d":
        return _num(d.day, k)
    if c == "a":
        return names[4] if d.hour < 12 else names[5]
    if c == "H":
        return _num(d.hour, k)
    if c == "k":
        return _num(d.hour or 24, k)
    if c == "K":
        return _num(d.hour % 12, k)
    if c == "h":
        return _num(d.hour % 12 or 12, k)
    if c == "m":
        return _num(d.minute, k)
    if c == "s":
        return _num(d.second, k)
    if c == "S":
        frac = f"{d.microsecond:06d}"
        return (frac + "0" * k)[:k]
    if c == "G":
        return "AD" if d.year > 0 else "BC"
    if c == "C":
        return _num(d.year // 100, k)
    if c in "Zz":
        aware = d.replace(tzinfo=zone or UTC)
        if c == "z":
            return aware.tzname() or "UTC"
        if k >= 3:
            return getattr(zone, "key", "UTC")
        off = aware.utcoffset() or timedelta(0)
        minutes = int(off.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        hh, mm = divmod(abs(minutes), 60)
        return f"{sign}{hh:02d}:{mm:02d}" if k == 2 else f"{sign}{hh:02d}{mm:02d}"
    raise ValueError(c)  # unreachable: letters are checked when compiling
