"""CaffeNet per frame (paper 3.1, 4.2): conv1..pool5 then fc6/fc7 of width D1.

conv1..conv5 keep bvlc_reference_caffenet's layer names and shapes, so ImageNet CaffeNet
weights initialise them with `caffe train -weights`. fc6/fc7 are 1024 wide rather than 4096;
they are named fc6_reid / fc7_reid so that Caffe, which copies weights by layer name, leaves
them to their fillers instead of aborting on the shape mismatch.
"""
from caffe import layers as L
from caffe import params as P

from reid.nets.layers import conv, fc


def caffenet(n, data, size, train, fc_layers=True):
    """Adds the trunk to NetSpec n; returns (pool5, fc7) tops for all frames of the batch
    (fc7 None without fc_layers: the metric-only variants use pool5 alone)."""
    c = size.conv
    n.conv1 = conv(data, c[0], size.conv1_kernel, stride=size.conv1_stride)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.norm1 = L.LRN(n.pool1, local_size=5, alpha=1e-4, beta=0.75)
    n.conv2 = conv(n.norm1, c[1], 5, pad=2, group=2, bias_value=0.1)
    n.relu2 = L.ReLU(n.conv2, in_place=True)
    n.pool2 = L.Pooling(n.relu2, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.norm2 = L.LRN(n.pool2, local_size=5, alpha=1e-4, beta=0.75)
    n.conv3 = conv(n.norm2, c[2], 3, pad=1)
    n.relu3 = L.ReLU(n.conv3, in_place=True)
    n.conv4 = conv(n.relu3, c[3], 3, pad=1, group=2, bias_value=0.1)
    n.relu4 = L.ReLU(n.conv4, in_place=True)
    n.conv5 = conv(n.relu4, c[4], 3, pad=1, group=2, bias_value=0.1)
    n.relu5 = L.ReLU(n.conv5, in_place=True)
    n.pool5 = L.Pooling(n.relu5, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    if not fc_layers:
        return n.pool5, None
    n.fc6_reid = fc(n.pool5, size.fc)
    n.relu6 = L.ReLU(n.fc6_reid, in_place=True)
    top = n.relu6
    if train and size.dropout:
        n.drop6 = L.Dropout(top, dropout_ratio=size.dropout, in_place=True)
        top = n.drop6
    n.fc7_reid = fc(top, size.fc)
    n.relu7 = L.ReLU(n.fc7_reid, in_place=True)
    top = n.relu7
    if train and size.dropout:
        n.drop7 = L.Dropout(top, dropout_ratio=size.dropout, in_place=True)
        top = n.drop7
    return n.pool5, top
