"""fakeface_tf: tell real face photos from StyleGAN faces, explain each verdict, audit fairness."""

from fakeface_tf.core import quiet

__version__ = "0.1.0"
quiet.install()  # TensorFlow, when something imports it, starts without its C++ log noise
