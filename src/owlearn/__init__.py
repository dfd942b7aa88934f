"""owlearn: open-world image recognition.

Classify what the model knows, reject what it has never seen, add classes without retraining.
"""

__version__ = "0.1.0"
