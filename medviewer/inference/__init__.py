"""Model manifests, the plugin registry, ONNX Runtime sessions and result types.

No Qt, no torch: onnxruntime is imported inside functions, so listing models is cheap.
"""

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import (
    InputSpec,
    Label,
    Manifest,
    load_manifest,
    manifest_from_dict,
    write_manifest,
)
from medviewer.inference.pipeline import InferenceCancelled, Pipeline
from medviewer.inference.providers import provider_status, working_providers
from medviewer.inference.registry import (
    LoadedModel,
    Plugin,
    find_model,
    list_models,
    list_plugins,
    load_plugin,
    open_model,
    register_plugin,
)
from medviewer.inference.results import Box, Explanation, Result

__all__ = [
    "Box", "Explanation", "InferenceCancelled", "InputSpec", "Label", "LoadedModel", "Manifest",
    "ModelError", "Pipeline", "Plugin", "Result", "find_model", "list_models", "list_plugins",
    "load_manifest", "load_plugin", "manifest_from_dict", "open_model", "provider_status",
    "register_plugin",
    "working_providers", "write_manifest",
]
