"""AttentionAverage as a Python layer: the readable twin of the native layer (paper 3.2, eq. 3).

    layer { type: "Python" bottom: "features" bottom: "scores" top: "xbar" top: "weights"
            python_param { module: "python_layers.attention_average"
                           layer: "AttentionAverageLayer" param_str: '{"axis": 1}' } }
"""
import caffe

from python_layers.params import parse_params, report_errors
from reid.ops.attention import attention_average_backward, attention_average_forward


@report_errors
class AttentionAverageLayer(caffe.Layer):
    """Bottoms: features (outer, T, inner...), scores (outer, T). Tops: xbar [, weights]."""

    def setup(self, bottom, top):
        self.axis = parse_params(self, {"axis": 1})["axis"]
        if len(bottom) != 2 or len(top) not in (1, 2):
            raise ValueError("AttentionAverageLayer needs 2 bottoms and 1 or 2 tops")

    def reshape(self, bottom, top):
        x_shape = bottom[0].data.shape
        axis = self.axis % len(x_shape)
        if bottom[1].data.shape != x_shape[:axis + 1]:
            raise ValueError("AttentionAverageLayer: scores %s do not match features %s"
                             % (bottom[1].data.shape, x_shape))
        top[0].reshape(*(x_shape[:axis] + x_shape[axis + 1:]))
        if len(top) > 1:
            top[1].reshape(*bottom[1].data.shape)

    def forward(self, bottom, top):
        y, self.w = attention_average_forward(bottom[0].data, bottom[1].data, self.axis)
        top[0].data[...] = y
        if len(top) > 1:
            top[1].data[...] = self.w

    def backward(self, top, propagate_down, bottom):
        dw = top[1].diff if len(top) > 1 else None
        dx, ds = attention_average_backward(bottom[0].data, self.w, top[0].diff, dw, self.axis)
        if propagate_down[0]:
            bottom[0].diff[...] = dx
        if propagate_down[1]:
            bottom[1].diff[...] = ds
