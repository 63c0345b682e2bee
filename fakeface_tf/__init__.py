"""fakeface_tf: tell real face photos from StyleGAN faces, explain each verdict, audit fairness."""

__version__ = "0.1.0"
