"""The spec: everything `pipe validate` needs, and nothing that imports TensorFlow.

Owns reading YAML with line marks (`yamlfile`), specs made of several files (`compose`:
`extends` and layered files, each value marked with the file that set it), `${}`
references between values (`references`), the merged spec printed with where each line
came from (`resolved`), `--set` overrides (`overrides`), the JSON
Schema and its error wording (`schema`), cross-field rules (`rules`), the loaded document
(`document`), the one error type and its reporters (`errors`, `report`), dataset metadata
references (`metadata`), the cluster description (`cluster`) and the typed, defaulted
views of its sections that the other packages read (`sections`: `spec.sections.train`, ...).

May import: the standard library, PyYAML and jsonschema. Never TensorFlow, Keras or tfds
(a test walks the imports): every other package may import this one, never the reverse.
"""

from runner.spec.document import Spec, load_spec
from runner.spec.errors import SpecError, SpecErrors
from runner.spec.schema import load_schema

__all__ = ["Spec", "SpecError", "SpecErrors", "load_schema", "load_spec"]
