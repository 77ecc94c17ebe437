"""The reference docs that the code can check: `docs/errors.md` is what the error table
generates, and `docs/configuration.md` lists exactly the settings `config.Settings` has (names,
defaults, bounds), and every environment variable read elsewhere in `src/`. A failure says
which names to add or remove, and how."""

from __future__ import annotations

import re
from pathlib import Path

from rdev import reference
from rdev.adapters.http import codes

SRC = Path(reference.__file__).parent
_ROW = re.compile(r"^\|\s*(`[^|]+`)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|\s*$")


def test_errors_doc_is_generated_from_the_error_table() -> None:
    expected = reference.errors_markdown()
    actual = reference.ERRORS_MD.read_text() if reference.ERRORS_MD.exists() else ""
    if actual != expected:
        documented = set(re.findall(r"^\| `([A-Z_]+)` \|", actual, re.M))
        table = set(codes.table())
        raise AssertionError(
            "docs/errors.md differs from the error table; run `python -m rdev.reference "
            f"errors`. Codes not in the doc: {sorted(table - documented)}; codes in the doc "
            f"but not in the table: {sorted(documented - table)}"
        )


def test_every_error_code_has_advice_and_no_advice_is_stale() -> None:
    table = set(codes.table())
    missing = sorted(table - codes.ADVICE.keys())
    stale = sorted(codes.ADVICE.keys() - table)
    assert not missing, f"add (meaning, what to do) to codes.ADVICE for: {missing}"
    assert not stale, f"codes.ADVICE names codes nothing answers: {stale}"


_SENT = re.compile(
    r'(?:envelope\(\s*|error_response\(\s*\d+,\s*|_raw_error\(\s*\d+,\s*"[^"]*",\s*)"([A-Z_]+)"'
)


def test_every_code_sent_past_the_error_table_is_in_it() -> None:
    """Codes written straight into a response (middleware, the connection guard, readiness)
    are in codes.DIRECT, so OpenAPI and docs/errors.md list them too."""
    sent = {
        (path.relative_to(SRC).as_posix(), code)
        for path in SRC.rglob("*.py")
        for code in _SENT.findall(path.read_text())
    }
    assert len(sent) >= 5  # the scan finds what it is meant to
    table = codes.table()
    unknown = sorted(f"{module}: {code}" for module, code in sent if code not in table)
    assert not unknown, f"add to adapters/http/codes.py:DIRECT (and ADVICE): {unknown}"


def _settings_table() -> dict[str, tuple[str, str, str]]:
    text = reference.CONFIG_MD.read_text()
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match and not line.startswith("| variable"):
            envs, default, bounds, meaning = match.groups()
            rows[envs] = (default, bounds, meaning)
    return rows


def test_configuration_doc_lists_every_setting_and_no_other() -> None:
    code = reference.settings_rows()
    doc = _settings_table()
    missing = [envs for envs in code if envs not in doc]
    unknown = [envs for envs in doc if envs not in code]
    message = []
    if missing:
        rows = "\n".join(reference.settings_row(envs) for envs in missing)
        message.append(f"settings missing from docs/configuration.md; add these rows:\n{rows}")
    if unknown:
        message.append(f"documented settings that config.Settings does not have: {unknown}")
    assert not message, "\n".join(message)


def test_configuration_doc_has_each_settings_default_bounds_and_meaning() -> None:
    doc = _settings_table()
    wrong = [
        f"{envs}: doc says default {doc[envs][0]!r}, bounds {doc[envs][1]!r}; "
        f"code says {default!r}, {bounds!r}"
        for envs, (_name, default, bounds) in reference.settings_rows().items()
        if envs in doc and doc[envs][:2] != (default, bounds)
    ]
    assert not wrong, "\n".join(wrong)
    unexplained = [envs for envs, (_d, _b, meaning) in doc.items() if len(meaning) < 10]
    assert not unexplained, f"say what these mean: {unexplained}"


_LITERAL_READ = re.compile(
    r"""(?:os\.environ(?:\.get)?\s*[\[(]|os\.getenv\(|envvar\s*=\s*\(?)\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""
)
_ANY_READ = re.compile(r"os\.environ|os\.getenv|getenv\(|envvar\s*=")


def test_every_environment_variable_read_in_src_is_documented() -> None:
    """Outside config.py, an environment read names a documented variable, or (when the name
    is not a literal) its module is named in the doc's "Read outside Settings" table."""
    doc = reference.CONFIG_MD.read_text()
    outside = doc.split("## Read outside `Settings`", 1)[1]
    settings = {n for envs in reference.settings_rows() for n in re.findall(r"`(\w+)`", envs)}
    undocumented = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "config.py" and path.parent == SRC:
            continue
        text = path.read_text()
        if not _ANY_READ.search(text):
            continue
        module = path.relative_to(SRC).as_posix()
        names = set(_LITERAL_READ.findall(text))
        undocumented += [
            f"{module}: {n}" for n in names if n not in settings and f"`{n}`" not in outside
        ]
        if module not in outside:
            undocumented.append(f"{module} (reads the environment; name it under 'read by')")
    assert not undocumented, "docs/configuration.md, 'Read outside Settings': " + "; ".join(
        undocumented
    )
