"""Every pair of text and background colours the stylesheet puts together keeps a
contrast ratio of at least 4.5:1 (WCAG 2 AA for normal text), in light and dark mode."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (Path(__file__).resolve().parents[2] / "registry/ui/static/ui.css").read_text()

# (text, background) as the stylesheet combines them.
PAIRS = [
    ("fg", "bg"),
    ("fg", "bg-soft"),
    ("fg", "bg-row"),
    ("fg", "code-bg"),
    ("fg", "accent-soft"),
    ("fg", "ok-soft"),
    ("fg", "danger-soft"),
    ("fg-muted", "bg"),
    ("fg-muted", "bg-soft"),
    ("fg-muted", "bg-row"),
    ("fg-muted", "accent-soft"),
    ("accent", "bg"),
    ("accent", "bg-soft"),
    ("accent", "bg-row"),
    ("accent", "accent-soft"),
    ("accent-fg", "accent"),
    ("danger-fg", "danger"),
    ("warn-fg", "warn-soft"),
    ("ok", "bg"),
    ("sig", "bg-soft"),
    ("sbom", "bg-soft"),
    ("att", "bg-soft"),
]


def variables(block: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;", block))


def schemes() -> dict[str, dict[str, str]]:
    light = variables(CSS[CSS.index(":root {") : CSS.index("}", CSS.index(":root {"))])
    start = CSS.index("@media (prefers-color-scheme: dark)")
    dark_root = CSS.index(":root {", start)
    dark = {**light, **variables(CSS[dark_root : CSS.index("}", dark_root)])}
    return {"light": light, "dark": dark}


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_formula() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_colours_keep_their_contrast(scheme: str) -> None:
    colours = schemes()[scheme]
    low = {
        f"{text} on {background}": round(contrast(colours[text], colours[background]), 2)
        for text, background in PAIRS
        if contrast(colours[text], colours[background]) < 4.5
    }
    assert low == {}


def test_dark_mode_redefines_every_colour() -> None:
    light = variables(CSS[CSS.index(":root {") : CSS.index("}", CSS.index(":root {"))])
    start = CSS.index("@media (prefers-color-scheme: dark)")
    dark_root = CSS.index(":root {", start)
    assert set(variables(CSS[dark_root : CSS.index("}", dark_root)])) == set(light)
