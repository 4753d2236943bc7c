"""Name checks shared by registries and the record schema."""

from __future__ import annotations

import difflib
import re

# Names end up in file paths and in the rendered site: keep them to a safe, boring alphabet.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or a list of choices when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(sorted(choices))})"
