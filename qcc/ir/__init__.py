"""qcc's intermediate representation: graphs of ONNX-style operators with use lists.

See :mod:`qcc.ir.core` for the data structures and :mod:`qcc.ir.verify` for the verifier.
"""

from qcc.ir.core import (
    Attr,
    AttrType,
    Dim,
    FusionGroup,
    Graph,
    Model,
    NameAuthority,
    Node,
    Origin,
    Shape,
    Use,
    Value,
    constant_node_value,
    constant_value,
    created_by,
    derived_origin,
    fusion_group,
)
from qcc.ir.dtypes import DType

__all__ = [
    "Attr",
    "AttrType",
    "DType",
    "Dim",
    "FusionGroup",
    "Graph",
    "Model",
    "NameAuthority",
    "Node",
    "Origin",
    "Shape",
    "Use",
    "Value",
    "constant_node_value",
    "constant_value",
    "created_by",
    "derived_origin",
    "fusion_group",
]
