"""The one input transform of every net: uint8 BGR frames -> Caffe blob minus the mean."""
import numpy as np

CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)   # the ImageNet mean CaffeNet weights expect


def to_blob(frames, mean=CAFFE_MEAN_BGR, mirror=None):
    """frames (..., H, W, 3) uint8 BGR -> float32 (prod(...), 3, H, W) minus `mean`.

    mirror: optional booleans, one per leading item (a whole clip), flipped left-right."""
    frames = np.asarray(frames)
    if mirror is not None:
        frames = np.stack([f[..., ::-1, :] if m else f for f, m in zip(frames, mirror)])
    flat = frames.reshape((-1,) + frames.shape[-3:]).transpose(0, 3, 1, 2)
    return flat.astype(np.float32) - np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
