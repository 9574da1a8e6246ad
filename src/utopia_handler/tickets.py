"""Render a ticket's summary and HTML description from editable templates: the installation
ticket, and the ticket the routing table opens for a UTOPIA message.

The description template is read from disk on every render, so an edited template takes effect
for the next ticket without a restart. Templates written for the old handler use `{name}`
placeholders; those are understood too. Templates run in a bounded sandbox (`template_sandbox`):
a template that loops, grows or recurses without end fails with the limit it went over.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError

from utopia_handler.template_sandbox import BoundedSandbox

BUILT_IN_TEMPLATE = Path(__file__).parent / "ticket_descriptions" / "new_desc.txt"
# The description of a ticket the routing table opens for a UTOPIA message (`ticket` action).
BUILT_IN_MESSAGE_TEMPLATE = Path(__file__).parent / "ticket_descriptions" / "message_desc.txt"
_LEGACY_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_]\w*)\}(?!\})")


class TemplateProblem(Exception):
    """The template cannot be read or rendered; the message says which and why."""


@dataclass(frozen=True)
class RenderedTicket:
    summary: str
    description_html: str


def from_legacy_syntax(source: str) -> str:
    """Turn an old `{customer_name}` template into Jinja2 unless it already uses Jinja2 syntax."""
    if "{{" in source or "{%" in source:
        return source
    return _LEGACY_PLACEHOLDER.sub(r"{{ \1 }}", source)


class TicketRenderer:
    """Renders tickets in a sandbox: templates are edited by operators, not developers."""

    def __init__(
        self,
        template_path: Path,
        summary_template: str,
        stored_source: Callable[[], tuple[str, str] | None] | None = None,
    ) -> None:
        self.template_path = template_path
        self.summary_template = summary_template
        # The template saved in the console, (source, where), read before the file on each render.
        self.stored_source = stored_source
        self._html = BoundedSandbox(autoescape=True, undefined=StrictUndefined)
        self._plain = BoundedSandbox(autoescape=False, undefined=StrictUndefined)

    def source(self) -> tuple[str, Path]:
        """The description template text and the file it came from (the built-in one if absent)."""
        path = self.template_path if self.template_path.is_file() else BUILT_IN_TEMPLATE
        try:
            return path.read_text(encoding="utf-8"), path
        except (OSError, UnicodeDecodeError) as error:
            raise TemplateProblem(f"ticket template {path} cannot be read: {error}") from None

    def render(self, variables: dict[str, Any], source: str | None = None) -> RenderedTicket:
        """Summary and description for one order; `source` overrides the file (for previews)."""
        stored = self.stored_source() if source is None and self.stored_source else None
        if stored is not None:
            source, where = stored
        elif source is None:
            source, path = self.source()
            where = str(path)
        else:
            where = "the template being edited"
        try:
            description = self._html.render_bounded(from_legacy_syntax(source), variables)
            summary = self._plain.render_bounded(self.summary_template, variables)
        except TemplateError as error:
            raise TemplateProblem(f"ticket template ({where}) failed to render: {error}") from None
        except RecursionError:
            raise TemplateProblem(
                f"ticket template ({where}) failed to render: it calls itself without end"
            ) from None
        except Exception as error:  # any failure of a person's template is theirs to fix
            # `{{ 1 / 0 }}`, `{{ "a" - 1 }}`, a number too large to show...: said in words.
            raise TemplateProblem(
                f"ticket template ({where}) failed to render: {type(error).__name__}: {error}"
            ) from None
        return RenderedTicket(summary=" ".join(summary.split())[:250], description_html=description)
