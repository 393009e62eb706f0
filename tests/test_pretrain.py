"""Pretraining stands in for ImageNet (paper 4.2): its caffemodel initialises every Table-2
variant by layer name, conv1..fc7_reid copied, the heads left to their fillers."""
import numpy as np
import pytest

from reid import run
from reid.nets.config import SMALL, VARIANTS, NetConfig, Schedule
from reid.pretrain import classes_of, write_pretrain_nets

TRUNK = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6_reid", "fc7_reid")


@pytest.fixture(scope="module")
def pretrained(tiny_mars, tmp_path_factory):
    import caffe
    caffe.set_mode_cpu()
    out = tmp_path_factory.mktemp("pretrain")
    cfg = NetConfig(size=SMALL, data_source=tiny_mars, batch_triplets=2, workers=0)
    classes = classes_of(tiny_mars)
    nets = write_pretrain_nets(cfg, classes, str(out), Schedule(max_iter=1))
    net = caffe.Net(nets["train_val"], caffe.TRAIN)
    loss = net.forward()["pretrain_loss"]
    assert np.isfinite(loss) and loss > 0
    assert net.blobs["pretrain_classifier"].data.shape == (2 * 3 * 6, classes)
    labels = net.blobs["frame_label"].data
    assert labels.min() >= 0 and labels.max() < classes      # class indices, per frame
    assert (labels.reshape(-1, 6) == labels.reshape(-1, 6)[:, :1]).all()
    for k, name in enumerate(TRUNK):
        for j, blob in enumerate(net.params[name]):
            blob.data[...] = 0.01 * (k + 1) + 0.001 * j
    path = str(out / "pretrain.caffemodel")
    net.save(path)
    return path


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pretrained_trunk_loads_into_every_variant(variant, pretrained, tiny_mars, tmp_path):
    import caffe
    caffe.set_mode_cpu()
    cfg = NetConfig(size=SMALL, variant=VARIANTS[variant], data_source=tiny_mars,
                    batch_triplets=2, workers=0)
    nets = run.write_nets(cfg, str(tmp_path), Schedule(max_iter=1))
    net = caffe.Net(nets["train_val"], caffe.TRAIN)
    heads = {n: [b.data.copy() for b in p] for n, p in net.params.items() if n not in TRUNK}
    assert bool(heads) == (variant != "cnn") and "pretrain_classifier" not in net.params
    net.copy_from(pretrained)
    trunk = [n for n in TRUNK if n in net.params]
    assert trunk == list(TRUNK if VARIANTS[variant].triplet else TRUNK[:5])
    for k, name in enumerate(TRUNK):
        if name in net.params:
            for j, blob in enumerate(net.params[name]):
                np.testing.assert_allclose(blob.data, 0.01 * (k + 1) + 0.001 * j, rtol=1e-6)
    for name, before in heads.items():          # TAM, LSTM, SRM, DIFF: fresh
        for b, d in zip(net.params[name], before):
            np.testing.assert_array_equal(b.data, d)
