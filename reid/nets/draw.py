"""Diagrams of the generated nets, drawn by Caffe's own python/caffe/draw.py (pydot + graphviz),
the way the paper's Figures 2-7 show the architecture: the trunk, the TAM unrolled over T
(paper 3.2), the SRM head on the pool5 difference (paper 3.3) and the losses.

The nets come from the generator (reid.nets.generate.all_files), so a diagram is always of a
committed prototxt. The three datasets' nets differ only in their data paths, so each net is
drawn once per size, from the MARS folder. `excerpt` keeps chosen layers of a net (caffe.draw
then draws their blobs too), for a readable crop of the 150-layer ALL net.
"""
import os
import re

from google.protobuf import text_format

DATASET = "mars"   # the nets of every dataset differ only in data paths (reid.nets.generate)
# The README's crop of the ALL net: the TAM's first two steps of the unrolled recurrence
# (paper eq. 3-5: attention over the frames' fc7, the attended average, the LSTM step) beside
# the SRM head (paper 3.3: pool5 difference, 1x1 conv, the six-direction sweep, 1x1 conv, FC).
README_EXCERPT = (r"fc7_seq|tam_Uf(_seq)?|lstm_c0|lstm_cont0?|(tam|lstm)_[A-Za-z]+[12](_r|_tiled)?"
                  r"|pool5_seq|pool5_a|pool5_neg|pair_.*|srm_.*|metric_.*")


def parse_net(text):
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


def generated_nets(root="prototxt"):
    """{(size, variant, net): NetParameter} of every generated net (solvers excluded)."""
    from reid.nets.generate import all_files
    nets = {}
    for path, text in all_files(root).items():
        parts = os.path.relpath(path, root).split(os.sep)
        if parts[0] != DATASET or not path.endswith(".prototxt") or parts[-1] == "solver.prototxt":
            continue
        size = "small" if parts[1] == "small" else "paper"
        nets[(size, parts[-2], parts[-1][:-len(".prototxt")])] = parse_net(text)
    return nets


def excerpt(net, pattern):
    """A copy of `net` with only the layers whose names match the regular expression."""
    out = type(net)()
    out.CopyFrom(net)
    del out.layer[:]
    out.layer.extend(l for l in net.layer if re.fullmatch(pattern, l.name))
    if not out.layer:
        raise ValueError("no layer of %s matches %r" % (net.name, pattern))
    return out


def draw(net, path, rankdir="TB"):
    """Writes the diagram of `net` (format from the extension: png, svg, pdf, dot); TRAIN phase."""
    import caffe
    import caffe.draw
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ext = os.path.splitext(path)[1][1:] or "png"
    data = caffe.draw.draw_net(net, rankdir, ext=ext, phase=caffe.TRAIN)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def draw_readme_excerpt(path, width=1800, colors=64):
    """The README's diagram: README_EXCERPT of the small ALL net (the paper-size net has the
    same layers), scaled to `width` pixels and a small palette to keep the repository light."""
    from PIL import Image
    draw(excerpt(generated_nets()[("small", "all", "train_val")], README_EXCERPT), path)
    im = Image.open(path).convert("RGB")
    im.thumbnail((width, 10 * width), Image.LANCZOS)
    im.quantize(colors).save(path, optimize=True)
    return path


def draw_all(out_dir, sizes=("paper", "small"), ext="png", progress=None):
    """Draws every generated net into out_dir/<size>/<variant>/<net>.<ext>; returns the paths."""
    nets = {k: v for k, v in generated_nets().items() if k[0] in sizes}
    items = sorted(nets.items())
    if progress:
        items = progress(items)
    return [draw(net, os.path.join(out_dir, size, variant, "%s.%s" % (name, ext)))
            for (size, variant, name), net in items]
