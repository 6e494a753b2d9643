"""A stand-in for Colab's `google.colab` module, so that CI's Colab leg runs each
notebook's real install cell (which only acts when `import google.colab` succeeds)."""
