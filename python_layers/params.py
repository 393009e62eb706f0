"""param_str parsing shared by every Python layer: JSON (or YAML) into a dict of defaults."""
import yaml


def parse_params(layer, defaults):
    """Merge the layer's param_str over `defaults`; unknown keys are an error naming the layer."""
    text = (layer.param_str or "").strip()
    given = yaml.safe_load(text) if text else {}
    if not isinstance(given, dict):
        raise ValueError("python layer %r: param_str must be a mapping, got %r"
                         % (layer.__class__.__name__, text))
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError("python layer %r: unknown parameter(s) %s in param_str; known: %s"
                         % (layer.__class__.__name__, unknown, sorted(defaults)))
    params = dict(defaults)
    params.update(given)
    return params


def blob_list(blobs):
    """pycaffe's bottom/top vectors index but do not iterate (boost::python converts each
    item by value and has no converter for Blob*): list them by index instead."""
    return [blobs[i] for i in range(len(blobs))]
