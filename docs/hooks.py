"""MkDocs hook of the user's guide: the build fails when a public name of the documented API has no docstring.

mkdocstrings renders what the docstrings say; an undocumented public function would render as a bare
signature, so `mkdocs build --strict` (run by .ci/run) refuses it here, naming each one. "Public" means a
module's `__all__`, and for each public class its public methods and properties defined in the class.
"""

from __future__ import annotations

import importlib
import inspect
from typing import List

from mkdocs.exceptions import PluginError

# The modules the API reference renders (docs/api/*.md).
DOCUMENTED = ("latentspaces", "latentspaces.errors", "latentspaces.assets", "latentspaces.images",
              "latentspaces.progress", "latentspaces.threads", "latentspaces.fingerprints", "latentspaces.storage",
              "latentspaces.torch_files", "latentspaces.spaces", "latentspaces.directions", "latentspaces.align",
              "latentspaces.metrics.identity", "latentspaces.metrics.identity_calibration",
              "latentspaces.metrics.perceptual", "latentspaces.metrics.image", "optimizers", "encoders")


def _undocumented(module_name: str) -> List[str]:
    module = importlib.import_module(module_name)
    missing = [] if inspect.getdoc(module) else [module_name]
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name, None)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue   # constants and re-exported values carry no docstring of their own
        if not inspect.getdoc(obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                if (inspect.isfunction(target) or isinstance(member, (classmethod, staticmethod))) and \
                        not inspect.getdoc(getattr(target, "__func__", target)):
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


def on_pre_build(config, **kwargs) -> None:
    missing = sorted({m for name in DOCUMENTED for m in _undocumented(name)})
    if missing:
        raise PluginError(f"{len(missing)} public name(s) without a docstring: {', '.join(missing)}")
