"""The GEM device suite (`pytest tests/device --device=NAME`)."""
