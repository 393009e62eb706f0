"""SRM re-scoring with the first (linear) layer applied once per tracklet (paper 3.3):
MetricScorer's projected path equals the whole deploy_metric net on the pool5 pairs."""
import os

import numpy as np
import pytest

from reid.nets import SMALL, VARIANTS, NetConfig
from reid.nets.build import metric_net
from reid.nets.generate import net_text


@pytest.fixture(params=["all", "cnn_diff"])
def scorer(request, tmp_path):
    import caffe
    from reid.evaluation.features import MetricScorer
    cfg = NetConfig(size=SMALL, variant=VARIANTS[request.param], deploy_batch=4)
    proto = tmp_path / "deploy_metric.prototxt"
    proto.write_text(net_text(metric_net(cfg), request.param))
    net = caffe.Net(str(proto), caffe.TEST)
    rng = np.random.default_rng(0)
    for params in net.params.values():     # random biases too: a lost bias must show
        for p in params:
            p.data[...] = rng.normal(0, 2.0 / np.sqrt(max(p.data[0].size, 1)), p.data.shape)
    weights = str(tmp_path / "random.caffemodel")
    net.save(weights)
    return MetricScorer(str(proto), weights)


def pool5(scorer, n, seed):
    shape = (n,) + scorer.net.blobs["pool5_a"].data.shape[1:]
    return np.random.default_rng(seed).gamma(1.0, 2.0, shape).astype(np.float32)


def test_projected_equals_full_net(scorer):
    a, b = pool5(scorer, 11, 1), pool5(scorer, 11, 2)     # 11 pairs: a partial last batch
    full = scorer.full_forward(a, b)
    assert full.std() > 1e-3                              # M depends on the pair
    np.testing.assert_allclose(scorer(a, b), full, rtol=0, atol=2e-6)


def test_metric_fn_projects_each_tracklet_once(scorer, monkeypatch):
    q, g = pool5(scorer, 3, 3), pool5(scorer, 7, 4)
    qi = np.array([0, 0, 1, 2, 2, 2, 1, 0])
    gi = np.array([6, 0, 3, 3, 6, 1, 5, 2])
    want = scorer.full_forward(q[qi], g[gi])
    projected = []
    real = scorer.project
    monkeypatch.setattr(scorer, "project", lambda x: projected.append(len(x)) or real(x))
    fn = scorer.metric_fn(q, g)
    got = np.concatenate([fn(qi[:5], gi[:5]), fn(qi[5:], gi[5:])])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert sum(projected) == 3 + 6          # gallery row 4 is never needed


def test_not_a_metric_net(tmp_path):
    from reid.evaluation.features import MetricScorer
    proto = tmp_path / "x.prototxt"
    proto.write_text('layer { name: "pool5_a" type: "Input" top: "pool5_a" '
                     'input_param { shape { dim: 2 dim: 3 dim: 4 dim: 1 dim: 1 } } }\n'
                     'layer { name: "ip" type: "InnerProduct" bottom: "pool5_a" top: "ip" '
                     'inner_product_param { num_output: 2 } }\n')
    import caffe
    caffe.Net(str(proto), caffe.TEST).save(str(tmp_path / "w.caffemodel"))
    with pytest.raises(ValueError, match="not a deploy_metric net"):
        MetricScorer(str(proto), str(tmp_path / "w.caffemodel"))
