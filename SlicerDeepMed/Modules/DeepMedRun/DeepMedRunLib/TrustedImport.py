"""Importing a MONAI bundle that needs its own code: the engine refuses it and says ``--trust-code`` exists;
the panel then asks ``deepmed zoo inspect BUNDLE --json`` (nothing runs) and shows the user what would run
before importing it with ``--trust-code`` (the model hubs' ``trust_remote_code`` convention)."""

from __future__ import annotations

from slicer.i18n import tr as _

SHOWN_ITEMS = 12  # per list in the dialog; the rest is counted


def needsTrust(result) -> bool:
    """A failed import whose refusal offers ``--trust-code`` (the engine's one line says so)."""
    return not result.succeeded and "--trust-code" in (result.errorMessage or "")


def confirmationText(report: dict) -> str:
    """What the confirm dialog says: the bundle, the engine's summary and what would run."""
    lines = [_("The MONAI bundle '{name}' needs its own code to run: {summary}").format(
        name=report.get("name", "?"), summary=report.get("summary", ""))]
    targets = [f"{t.get('key')}: {t.get('target')}" for t in report.get("targets", [])]
    expressions = [f"{e.get('key')}: {str(e.get('code'))[:120]}" for e in report.get("expressions", [])]
    imports = [str(line).lstrip("$").strip() for line in report.get("imports", [])]
    sections = ((_("Python files of the bundle:"), list(report.get("scripts", []))),
                (_("Classes from the bundle:"), targets), (_("Expressions:"), expressions), (_("Imports:"), imports))
    for title, items in sections:
        if items:
            lines.append("")
            lines.append(title)
            lines += [f"  {item}" for item in items[:SHOWN_ITEMS]]
            if len(items) > SHOWN_ITEMS:
                lines.append("  " + _("... and {count} more").format(count=len(items) - SHOWN_ITEMS))
    lines += ["", _("It runs in DeepMed's background process, through MONAI, each time the model is used. Import "
                    "it only if you trust where the bundle comes from. Import with its code?")]
    return "\n".join(lines)
