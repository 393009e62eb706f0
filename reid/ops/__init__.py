"""Pure NumPy forward/backward math of the project's layers (no Caffe import)."""
