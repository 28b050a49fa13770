"""The registry every part of ticketaudit loops over: audit, engine, checks, schema, report and CLI help.

Built-in analyses are the modules of ``ticketaudit.analyses.builtin`` (each exposes ``ANALYSIS``);
other packages add theirs through the entry-point group ``ticketaudit.analyses`` (an ``Analysis``
subclass or instance), or at run time with ``ticketaudit.register_analysis``.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata

from .._validation import describe, fail
from .base import Analysis

ENTRY_POINT_GROUP = "ticketaudit.analyses"
_REGISTERED: dict[str, Analysis] = {}
_LOADED = [False]


def _check(analysis: object, *, where: str) -> Analysis:
    if isinstance(analysis, type) and issubclass(analysis, Analysis):
        analysis = analysis()
    if not isinstance(analysis, Analysis):
        fail(f"{where} must be a ticketaudit.Analysis subclass or instance; got {describe(analysis)}.")
    name = analysis.name
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        fail(f"{where}: an analysis name must be a lower-case identifier (letters, digits, _), got {name!r}.")
    return analysis


def register_analysis(analysis: type[Analysis] | Analysis, *, replace: bool = False) -> Analysis:
    """Make ``analysis`` available to ``--analyses``, the JSON, the HTML report and every engine.

    A name already taken is refused unless ``replace=True`` (built-in names can never be replaced).
    """
    _load()
    checked = _check(analysis, where="register_analysis(...)")
    taken = _REGISTERED.get(checked.name)
    if taken is not None and (not replace or type(taken).__module__.startswith("ticketaudit.analyses.builtin")):
        fail(f"an analysis named {checked.name!r} is already registered ({type(taken).__module__}); choose "
             "another name" + ("" if type(taken).__module__.startswith("ticketaudit.") else " or pass replace=True") + ".")
    _REGISTERED[checked.name] = checked
    return checked


def _load() -> None:
    """Built-ins first, then every installed entry point (once per process)."""
    if _LOADED[0]:
        return
    from . import builtin

    for module_info in pkgutil.iter_modules(builtin.__path__):
        module = importlib.import_module(f"{builtin.__name__}.{module_info.name}")
        analysis = _check(module.ANALYSIS, where=f"{module.__name__}.ANALYSIS")
        _REGISTERED[analysis.name] = analysis
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as error:  # a broken plug-in must name itself, not break every audit obscurely
            fail(f"the analysis plug-in '{entry.name}' ({entry.value}) could not be imported: "
                 f"{type(error).__name__}: {error}. Fix or uninstall the package that provides it.")
        analysis = _check(loaded, where=f"the entry point '{entry.name}' ({entry.value})")
        if analysis.name in _REGISTERED and _REGISTERED[analysis.name] is not analysis:
            fail(f"the analysis plug-in '{entry.value}' uses the name {analysis.name!r}, which is taken; "
                 "rename it in the plug-in.")
        _REGISTERED[analysis.name] = analysis
    _LOADED[0] = True


def analyses() -> tuple[Analysis, ...]:
    """Every registered analysis, in report order."""
    _load()
    return tuple(sorted(_REGISTERED.values(), key=lambda a: (a.order, a.name)))


def names() -> tuple[str, ...]:
    return tuple(a.name for a in analyses())


def get(name: str) -> Analysis:
    """The analysis called ``name``, or a clear refusal listing the known ones."""
    found = {a.name: a for a in analyses()}.get(name)
    if found is None:
        fail(f"analysis '{name}' is unknown. Choose from: {', '.join(names())}.")
    return found


def help_line() -> str:
    """The ``--analyses`` help, generated from the registry."""
    return ("Comma-separated, from: " + ", ".join(names()) + " [default: every one that applies to the model; "
            "metrics always runs].")
