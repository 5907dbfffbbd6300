"""Shipped as the package audiokit.configs, so installs without the repo find default.toml."""
