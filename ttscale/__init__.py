"""ttscale: train PRMs and revision models, and spend test-time compute with them."""

__version__ = "0.1.0"
