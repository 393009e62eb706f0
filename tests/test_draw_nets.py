"""Diagrams of the generated nets (reid/nets/draw.py, tools/draw_nets.py): Caffe's draw.py
with pydot and graphviz draws one for every variant, and it shows every layer of the net."""
import html
import re

import pytest

from reid.nets import VARIANTS, draw


@pytest.fixture(scope="module")
def small_train_nets():
    return {v: net for (size, v, name), net in draw.generated_nets().items()
            if size == "small" and name == "train_val"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_gets_a_diagram_of_every_layer(variant, small_train_nets, tmp_path):
    net = small_train_nets[variant]
    svg = open(draw.draw(net, str(tmp_path / (variant + ".svg")))).read()
    labels = {html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)}
    # caffe.draw labels a layer "name (Type ...)"; every layer of the generated net is drawn
    missing = [l.name for l in net.layer
               if not any(t.startswith("%s (%s" % (l.name, l.type)) for t in labels)]
    assert not missing, missing
    types = {l.type for l in net.layer}
    assert ("AttentionAverage" in types) == VARIANTS[variant].temporal.startswith("tam")
    assert ("SpatialLSTM" in types) == (VARIANTS[variant].metric == "srm")


def test_png_and_readme_excerpt(tmp_path):
    png = draw.draw_readme_excerpt(str(tmp_path / "excerpt.png"), width=600)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    net = draw.generated_nets()[("small", "all", "train_val")]
    kept = {l.type for l in draw.excerpt(net, draw.README_EXCERPT).layer}
    assert {"AttentionAverage", "LSTMUnit", "SpatialLSTM", "SoftmaxWithLoss"} <= kept
    with pytest.raises(ValueError, match="no layer"):
        draw.excerpt(net, "no_such_layer")
