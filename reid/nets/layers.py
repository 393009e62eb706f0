"""Small NetSpec helpers shared by the trunk, the TAM and the SRM builders."""
from caffe import layers as L
from caffe import params as P

WEIGHT = dict(lr_mult=1, decay_mult=1)
BIAS = dict(lr_mult=2, decay_mult=0)
XAVIER = dict(type="xavier")


def named(prefix, bias=True):
    """Param specs named so that every use of `prefix` shares one set of blobs."""
    specs = [dict(name=prefix + "_w", **WEIGHT)]
    if bias:
        specs.append(dict(name=prefix + "_b", **BIAS))
    return specs


def fc(bottom, num, share=None, bias=True, axis=1, filler=XAVIER):
    """InnerProduct; `share` names its params so that unrolled steps reuse them."""
    kw = dict(num_output=num, axis=axis, bias_term=bias, weight_filler=filler)
    if bias:
        kw["bias_filler"] = dict(type="constant", value=0)
    params = named(share, bias) if share else ([WEIGHT, BIAS] if bias else [WEIGHT])
    return L.InnerProduct(bottom, inner_product_param=kw, param=params)


def conv(bottom, num, kernel, stride=1, pad=0, group=1, bias_value=0.0):
    return L.Convolution(bottom, num_output=num, kernel_size=kernel, stride=stride, pad=pad,
                         group=group, weight_filler=XAVIER,
                         bias_filler=dict(type="constant", value=bias_value),
                         param=[WEIGHT, BIAS])


def reshape(bottom, *dims):
    return L.Reshape(bottom, shape=dict(dim=list(dims)))


def diff(a, b):
    """a - b, elementwise."""
    return L.Eltwise(a, b, operation=P.Eltwise.SUM, coeff=[1, -1])


def add(*bottoms, coeff=None):
    kw = dict(operation=P.Eltwise.SUM)
    if coeff is not None:
        kw["coeff"] = list(coeff)
    return L.Eltwise(*bottoms, **kw)


def constant(shape, value):
    return L.DummyData(shape=[dict(dim=list(shape))],
                       data_filler=[dict(type="constant", value=value)])


def python(module, layer, bottoms, ntop=1, param_str="", **kw):
    return L.Python(*bottoms, ntop=ntop,
                    python_param=dict(module=module, layer=layer, param_str=param_str), **kw)
