"""Parser: the located AST, separators, the friendly-error table, value parsing."""

from __future__ import annotations

import pytest

from qcc import select
from qcc.recipe import ast as A
from qcc.recipe.diagnostics import RecipeError
from qcc.recipe.parser import SYNTAX_EXAMPLES, parse_recipe, parse_value

SKETCH = """\
recipe int8_ort
include "common/cleanup.q"                  # composition; relative to this file
let samples = 256

calibration {
  data    "calib/*.npy"
  preprocess { resize 224x224, layout NCHW, scale 1/255, mean [0.485,0.456,0.406], std [1,1,1] }
  samples $samples
  seed    0
}

scheme w8 = int8 symmetric per_channel
scheme a8 = uint8 asymmetric per_tensor observer percentile(99.99)

pipeline {
  use cleanup
  fold-batchnorm
  fuse-activations conv-relu, conv-clip
  observe weights = w8, activations = a8
  calibrate
  quantize exclude name("/model.22/*") | op(Softmax) | between(["/head/in"], ["output0"])
}

target onnx { format = qdq, opset = 17 }
"""


def test_the_issue_sketch_parses_with_locations():
    rf = parse_recipe(SKETCH, "int8-ort.q")
    kinds = [type(s).__name__ for s in rf.statements]
    assert kinds == [
        "RecipeDecl",
        "Include",
        "Let",
        "Calibration",
        "Scheme",
        "Scheme",
        "Pipeline",
        "Target",
    ]
    pipe = rf.statements[6]
    quantize = pipe.steps[-1]
    assert quantize.name == "quantize"
    assert quantize.span == A.Span("int8-ort.q", 21, 3, 21, 90)
    assert quantize.exclude == select.Union(
        select.Union(select.NamePattern("/model.22/*"), select.OpType(("Softmax",))),
        select.Between(("/head/in",), ("output0",)),
    )
    col = SKETCH.splitlines()[20].index("between") + 1
    assert quantize.exclude.right.where == A.Span("int8-ort.q", 21, col, 21, 90)
    cal = rf.statements[3].block.settings
    assert [s.key for s in cal] == ["data", "preprocess", "samples", "seed"]
    assert cal[1].value.settings[2].value == A.Fraction(1, 255)
    assert cal[2].value == A.Var("samples")
    assert rf.comments[0].text == "# composition; relative to this file"


def test_separators_and_continuations():
    a = parse_recipe(
        "pipeline { a; b\n\n  c x=1,\n    y=2\n  d on op(X)\n    | op(Y)\n    exclude op(Z) }"
    )
    steps = a.statements[0].steps
    assert [s.name for s in steps] == ["a", "b", "c", "d"]
    assert steps[2].args == (A.KwArg("x", A.Int(1)), A.KwArg("y", A.Int(2)))
    assert steps[3].on == select.Union(select.OpType(("X",)), select.OpType(("Y",)))
    assert steps[3].exclude == select.OpType(("Z",))


def test_selector_precedence_is_like_python_sets():
    st = parse_recipe("pipeline { p on op(A) | op(B) & op(C) - op(D) }").statements[0].steps[0]
    assert st.on == select.Union(
        select.OpType(("A",)),
        select.Intersect(
            select.OpType(("B",)), select.Difference(select.OpType(("C",)), select.OpType(("D",)))
        ),
    )


def test_string_escapes_keep_regex_backslashes():
    st = parse_recipe(r'let p = "a\"b\\c\d"').statements[0]
    assert st.value.value == 'a"b\\c\\d'


@pytest.mark.parametrize(
    "label,example", [(label, ex) for label, exs in SYNTAX_EXAMPLES.items() for ex in exs]
)
def test_every_friendly_error_example_gets_its_message(label, example):
    with pytest.raises(RecipeError) as e:
        parse_recipe(example, "x.q")
    assert label in e.value.diagnostics[0].message


def test_keywords_cannot_be_names():
    with pytest.raises(RecipeError) as e:
        parse_recipe("recipe pipeline")
    assert e.value.diagnostics[0].message == "'pipeline' is a keyword and cannot be used as a name"


def test_parse_value():
    assert parse_value("512") == A.Int(512)
    assert parse_value("[1, 2.5]") == A.List((A.Int(1), A.Float(2.5)))
    assert parse_value("3/4").value == 0.75
    with pytest.raises(RecipeError):
        parse_value("a b")
