"""Every set of choices a user picks from, declared once (light to import: the CLI help reads them).

The analyses are not here: they come from the registry (``ticketaudit.analyses.registry``), plug-ins included.
"""

from __future__ import annotations

DEVICES: tuple[str, ...] = ("cpu", "cuda", "mps")
ENGINES: tuple[str, ...] = ("local", "ray")
PRECISIONS: tuple[str, ...] = ("auto", "float64", "float32", "bfloat16")
"""``float64``: results independent of batch size and workers; the others: the model's own speed."""
TRUNCATIONS: tuple[str, ...] = ("head", "head+tail", "error")
"""Text longer than the model's limit: its first tokens, its first quarter + last three quarters, or exit 2."""
ATTRIBUTION_METHODS: dict[str, str] = {
    "integrated-gradients": "IntegratedGradients", "saliency": "Saliency", "input-x-gradient": "InputXGradient",
    "deeplift": "DeepLift", "gradient-shap": "GradientShap", "feature-ablation": "FeatureAblation",
    "layer-integrated-gradients": "LayerIntegratedGradients", "occlusion": "Occlusion",
}
"""Each attribution method's Captum class, by name (Captum loads only when an audit attributes)."""
ATTRIBUTION_TARGETS: tuple[str, ...] = ("label", "predicted")
PRUNING_METHODS: tuple[str, ...] = ("global-magnitude", "layerwise-magnitude", "group-balanced", "worst-group",
                                    "structured")
RECOVERIES: tuple[str, ...] = ("none", "finetune", "group-reweighted", "constrained", "distill")


def listed(choices: tuple[str, ...] | dict[str, str], *, last: str = "or") -> str:
    """``a, b or c``: a set of choices in words, for help texts and messages."""
    names = list(choices)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"
