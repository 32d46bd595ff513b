"""Export-control gate: rules from settings (ASSAY_EXPORT_CONTROL) on the version's category, its measured
accuracy and the territories its licences allow; each broken rule flags or blocks as configured."""
from __future__ import annotations

from typing import Any

from django.conf import settings

from governance.gates import BLOCK, FLAG, PASS, Finding, GateContext, GateImage, GateResult, register, worst

DEFAULT_RULES: dict[str, Any] = {
    "controlled_categories": [],  # taxonomy prefixes, e.g. "defence/", "aerospace/engine"
    "category_action": BLOCK,
    "min_accuracy_mm": None,  # scans finer than this (accuracy_mm smaller) are controlled
    "accuracy_action": FLAG,
    "embargoed_territories": [],  # ISO codes the licences must not open
    "territory_action": BLOCK,
}


@register
class ExportControlGate:
    name = "export_control"
    version = "1.0"

    def __init__(self, rules: dict[str, Any] | None = None):
        self.rules = {**DEFAULT_RULES, **(rules if rules is not None else getattr(settings, "ASSAY_EXPORT_CONTROL", {}))}

    def check(self, images: list[GateImage], context: GateContext) -> GateResult:
        r, outcome, reasons, findings = self.rules, PASS, [], []
        category = (context.category or "").lower()
        for prefix in r["controlled_categories"]:
            if category.startswith(prefix.lower()):
                outcome = worst(outcome, r["category_action"])
                reasons.append(f"category '{context.category}' is on the controlled list ({prefix})")
        accuracy = context.quality_metrics.get("accuracy_mm", context.metadata.get("accuracy_mm"))
        if r["min_accuracy_mm"] is not None and accuracy is not None and float(accuracy) < float(r["min_accuracy_mm"]):
            outcome = worst(outcome, r["accuracy_action"])
            reasons.append(f"scan accuracy {accuracy} mm is finer than the controlled threshold {r['min_accuracy_mm']} mm")
        embargoed = {t.upper() for t in r["embargoed_territories"]}
        if embargoed:
            if context.territories is None:
                open_to = sorted(embargoed)
                reason = "the licences are worldwide and so open embargoed territories"
            else:
                open_to = sorted(embargoed & {t.upper() for t in context.territories})
                reason = "the licences open embargoed territories"
            if open_to:
                outcome = worst(outcome, r["territory_action"])
                reasons.append(f"{reason} {', '.join(open_to)}")
        if reasons:
            findings.append(Finding(image="", label="export_control", detail={"rules": reasons}))
        return GateResult(outcome, "; ".join(reasons), findings)
