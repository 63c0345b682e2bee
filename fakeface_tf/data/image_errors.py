"""Why an image cannot be decoded: one error type per answer the web API gives.

Raised by `images.load_image` and the header checks of `decode_memory`, and imported from
`images` by everyone else (they are re-exported there).
"""

from __future__ import annotations

from fakeface_tf.core.errors import FakefaceError


class ImageError(FakefaceError):
    """A file or byte string that cannot be decoded into an image; the message says why."""


class EmptyImageError(ImageError):
    """Zero bytes were given (the web API answers 400)."""


class NotAnImageError(ImageError):
    """Text, an unknown format or a format outside FORMATS (415)."""


class CorruptImageError(ImageError):
    """An accepted format's header was found but decoding it failed (422)."""


class ImageTooLargeError(ImageError):
    """More pixels than allowed, a likely decompression bomb (413)."""
