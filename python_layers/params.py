"""param_str parsing shared by every Python layer: JSON (or YAML) into a dict of defaults."""
import yaml


def parse_param_str(text, defaults, owner):
    """Merge a param_str (JSON or YAML mapping) over `defaults`; errors name `owner`."""
    text = (text or "").strip()
    given = yaml.safe_load(text) if text else {}
    if not isinstance(given, dict):
        raise ValueError("%s param_str: must be a mapping, got %r" % (owner, text))
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError("%s param_str: unknown keys %s (known: %s)"
                         % (owner, unknown, sorted(defaults)))
    for key, value in given.items():
        _check_type(owner, key, value, defaults[key])
    params = dict(defaults)
    params.update(given)
    return params


_KINDS = ((bool, (bool,), "true or false"), (int, (int,), "an integer"),
          (float, (int, float), "a number"), (str, (str,), "a string"),
          ((list, tuple), (list,), "a list"), (dict, (dict,), "a mapping"))


def _check_type(owner, key, value, default):
    """A value of the default's kind (e.g. split_index 3, not "3"); None defaults take any."""
    for kind, accepted, what in _KINDS:
        if isinstance(default, kind):
            ok = isinstance(value, accepted) and (kind is bool or not isinstance(value, bool))
            if not ok:
                raise ValueError("%s param_str: %s must be %s (like the default %r), got %r"
                                 % (owner, key, what, default, value))
            return


def parse_params(layer, defaults):
    """The Python layer's param_str merged over `defaults` (see parse_param_str)."""
    return parse_param_str(layer.param_str, defaults, layer.__class__.__name__)


def blob_list(blobs):
    """pycaffe's bottom/top vectors index but do not iterate (boost::python converts each
    item by value and has no converter for Blob*): list them by index instead."""
    return [blobs[i] for i in range(len(blobs))]


def report_errors(cls):
    """Class decorator for Python layers: print a layer's exception before it reaches C++.

    The `caffe` tool is built without WITH_PYTHON_LAYER (libcaffe keeps that definition
    private), so a Python exception there ends in std::terminate with no message at all."""
    import functools
    import sys
    import traceback

    def wrap(fn):
        @functools.wraps(fn)
        def method(self, *args):
            try:
                return fn(self, *args)
            except Exception:
                sys.stderr.write("Python layer %s.%s.%s failed:\n%s" % (
                    cls.__module__, cls.__name__, fn.__name__, traceback.format_exc()))
                sys.stderr.flush()
                raise
        return method

    for name in ("setup", "reshape", "forward", "backward"):
        if name in vars(cls):
            setattr(cls, name, wrap(vars(cls)[name]))
    return cls
